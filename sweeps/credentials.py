"""What a sweep keeps secret, and what it must trust. Credentials in a tracking URI (``user:password@``,
``?token=``) are split off into the environment variables MLflow reads them from, so that the URI the
sweep uses, prints, pickles and saves holds none; ``--resume`` gets them back from one mode-0600 file in
the sweep directory. That directory also holds Tune's pickled state, which ``--resume`` unpickles: it is
refused when someone else can write it.

Standard library only: the entry scripts call ``without_credentials_on_command_line`` before anything else.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

# Where MLflow's REST client reads a tracking server's credentials (mlflow.environment_variables).
USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"
PG_PASSWORD_ENV = "PGPASSWORD"  # libpq's, which psycopg2 and psycopg (SQLAlchemy's default drivers) read
CREDENTIAL_ENVS = (USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV, PG_PASSWORD_ENV)
TOKEN_PARAMS = ("token", "access_token")  # query parameters that carry a bearer token
LIBPQ_DRIVERS = ("", "psycopg2", "psycopg", "psycopg2cffi")  # postgresql+<driver> that read PGPASSWORD
CREDENTIALS_FILE = "credentials.json"  # in the sweep directory, mode 0600: what --resume needs, nothing more
# Across the re-exec of an entry script: which of the variables came from its command line.
FROM_COMMAND_LINE_ENV = "CVSWEEP_CREDENTIALS_FROM_COMMAND_LINE"
TRACKING_URI_HELP = (
    "MLflow tracking URI: http(s)://host:port for a tracking server, sqlite:///path/mlflow.db for a local "
    "database (default: $MLFLOW_TRACKING_URI, else MLflow's local default sqlite:///mlflow.db in this "
    "directory). A user:password@ or ?token= in it goes to MLflow as MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN "
    "and is never printed or saved with the runs"
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s]+")


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """(the URI without its credentials, the environment variables that carry them). A tracking server's
    ``user:password@`` becomes MLFLOW_TRACKING_USERNAME/PASSWORD (percent-decoding applied) and a
    ``token=``/``access_token=`` query parameter MLFLOW_TRACKING_TOKEN (a bearer token); a PostgreSQL
    password, PGPASSWORD. Anything else (a SQLite or file store, a URI without credentials) is returned
    as it is, with no variables."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if scheme in ("http", "https"):
        creds: dict[str, str] = {}
        user, colon, password = userinfo.partition(":")
        if user:
            creds[USERNAME_ENV] = unquote(user)
        if colon:
            creds[PASSWORD_ENV] = unquote(password)
        query, token = _without_token(parts.query)
        if token is not None:
            creds[TOKEN_ENV] = token
        return (urlunsplit(parts._replace(netloc=hostport, query=query)) if creds or at else uri), creds
    db, _, driver = scheme.partition("+")
    if db in ("postgresql", "postgres") and driver in LIBPQ_DRIVERS and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        return urlunsplit(parts._replace(netloc=f"{user}@{hostport}")), {PG_PASSWORD_ENV: unquote(password)}
    return uri, {}


def secret_left(uri: str) -> bool:
    """Whether ``uri`` still carries a password or token (one ``split_credentials`` cannot move)."""
    parts = urlsplit(uri)
    return ":" in parts.netloc.rpartition("@")[0] or _without_token(parts.query)[1] is not None


def shown(uri: str) -> str:
    """A URI fit to print: credentials in it (``http://user:token@host``, ``postgresql://user:pw@db``,
    ``?token=...``) become ``***``. Runs never record the URI at all."""
    parts = masked = urlsplit(uri)
    if "@" in parts.netloc:
        masked = masked._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    if _without_token(parts.query)[1] is not None:
        masked = masked._replace(query="&".join(_masked(p) for p in parts.query.split("&")))
    return uri if masked == parts else urlunsplit(masked)  # urlunsplit rewrites sqlite:///x as sqlite:/x


def _without_token(query: str) -> tuple[str, str | None]:
    """(the query without token parameters, the last token's value or None). The rest stays as written."""
    kept, token = [], None
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        if unquote(key).lower() in TOKEN_PARAMS:
            token = unquote(value.replace("+", " "))
        else:
            kept.append(pair)
    return "&".join(kept), token


def _masked(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    return f"{key}=***" if eq and unquote(key).lower() in TOKEN_PARAMS else pair


def without_credentials_on_command_line() -> None:
    """Run this script again, in the same process (same id, streams and exit status), with every URI on its
    command line stripped of credentials, which go to the environment instead (``split_credentials``);
    returns at once when there are none. Whatever reads a process's command line then never sees them:
    ``ps`` and /proc/<pid>/cmdline, and Ray, which records a driver's command line as its job's entrypoint
    (``ray list jobs``, the dashboard). Rewriting ``sys.argv`` would not do: Ray reads the command line from
    the operating system."""
    if os.name != "posix":  # exec on Windows starts another process: leave the command line as it is there
        return
    creds: dict[str, str] = {}

    def clean(match: re.Match) -> str:
        uri, found = split_credentials(match.group(0))
        creds.update(found)
        return uri

    argv = [_URI.sub(clean, arg) for arg in sys.orig_argv]
    if not creds:
        return
    env = {**os.environ, **creds, FROM_COMMAND_LINE_ENV: ",".join(creds)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def from_command_line() -> dict[str, str]:
    """The credentials ``without_credentials_on_command_line`` moved out of this script's command line (and
    forgets which they were: asked once per process)."""
    names = os.environ.pop(FROM_COMMAND_LINE_ENV, "")
    return {n: os.environ[n] for n in names.split(",") if n in CREDENTIAL_ENVS and n in os.environ}


def save_credentials(sweep_dir: Path, creds: dict[str, str]) -> Path | None:
    """Keep what a tracking URI carried for ``--resume``: ``credentials.json`` in the sweep directory, mode
    0600 from its creation. None (and no file) when there is nothing to keep."""
    if not creds:
        return None
    path = sweep_dir / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # open's mode applies to a new file only
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    return path


def restore_credentials(sweep_dir: Path) -> list[str]:
    """Put the credentials ``save_credentials`` kept back into the environment, each unless the environment
    already has one (a password changed since is given that way). Only the variables of CREDENTIAL_ENVS are
    read from the file. Returns the names set."""
    path = sweep_dir / CREDENTIALS_FILE
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    names = [k for k, v in saved.items() if k in CREDENTIAL_ENVS and isinstance(v, str) and k not in os.environ]
    os.environ.update({k: saved[k] for k in names})
    return names


def untrusted(sweep_dir: Path) -> str | None:
    """Why the pickles ``--resume`` loads from ``sweep_dir`` may not be the sweep's own, or None. They are
    the directory's files (tuner.pkl, searcher-state-*.pkl, experiment_state-*.json hold pickles): whoever
    can write the directory or one of them can run code as the user who resumes. Refused: another user
    owns one, others can write it, or a group can that is not the owner's own (a user private group, as
    a umask of 002 gives, is fine)."""
    me = os.getuid()
    for path in [sweep_dir, *sorted(p for p in sweep_dir.iterdir() if p.is_file())]:
        st = path.stat()
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in (me, 0):
            who = f"its owner, user {_user(st.st_uid)},"
        elif mode & stat.S_IWOTH:
            who = "every user"
        elif mode & stat.S_IWGRP and not _own_group(st.st_gid, st.st_uid):
            who = f"group {_group(st.st_gid)}"
        else:
            continue
        return (
            f"--resume {sweep_dir}: {who} can write {path} (mode {mode:04o}), and --resume unpickles this "
            "sweep's saved state: whoever can write it can run code as you. If you trust them, or once you "
            f"have checked the files, make them yours alone (chown -R {_user(me)} {sweep_dir}; "
            f"chmod -R go-w {sweep_dir}) and resume again."
        )
    return None


def _own_group(gid: int, uid: int) -> bool:
    """Whether ``gid`` is the user private group of ``uid``: same name, no other members."""
    import grp  # POSIX only, as the checks that need them: imported here, so that Windows can import this module
    import pwd

    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return group.gr_name == user and set(group.gr_mem) <= {user}


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
