"""Predicting with a sweep's model: which files are read, how bad ones and bad --model values are
refused, which model "the champion" is, and that predictions are the model's own through its transform."""

import mlflow
import pytest
import torch
from PIL import Image

from analysis.champion import Classifier, champion_of_latest_sweep, check_images, find_images, resolve_run
from analysis.predict import main, predict
from trainables.augment import eval_config
from trainables.data import load_digits
from trainables.models import build_model, data_config


@pytest.fixture
def photos(tmp_path):
    digits = load_digits()
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    for i in range(6):
        where = root / "more" if i % 2 else root
        digits.test.load(i).save(where / f"d{i}.{'png' if i % 3 else 'jpg'}")
    (root / "notes.txt").write_text("not an image, and not an image extension: never read")
    return root, digits


def test_a_directory_is_searched_recursively_in_sorted_order_with_names_relative_to_it(photos):
    root, _ = photos
    names = [name for name, _ in find_images([str(root)])]
    assert names == ["d0.jpg", "d2.png", "d4.png", "more/d1.png", "more/d3.jpg", "more/d5.png"]
    with pytest.raises(FileNotFoundError, match="nope.png: no such file or directory"):
        find_images([str(root / "nope.png")])
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files in it"):
        find_images([str(root / "empty")])


def test_a_directory_gives_the_images_a_sweep_would_read_and_says_what_it_left_out(photos):
    root, digits = photos
    digits.test.load(7).save(root / "d7.gif")  # a sweep reads GIFs (their first frame); ImageFolder's list has none
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "d0.jpg").write_bytes(b"resource fork")
    (root / "._d2.png").write_bytes(b"AppleDouble")
    said = []
    names = [name for name, _ in find_images([str(root)], warn=said.append)]
    assert names == ["d0.jpg", "d2.png", "d4.png", "d7.gif", "more/d1.png", "more/d3.jpg", "more/d5.png"]
    assert said == [f"{root}: left out 2 hidden or system file(s), e.g. ._d2.png (macOS AppleDouble metadata)"]


def test_with_several_inputs_each_name_says_which_it_came_from(photos, tmp_path):
    root, digits = photos
    other = tmp_path / "other"
    other.mkdir()
    digits.test.load(9).save(other / "d0.jpg")  # the same name as a file of the first directory
    names = [name for name, _ in find_images([str(root), str(other), str(root / "d2.png")])]
    assert names[:2] == [f"{root}/d0.jpg", f"{root}/d2.png"] and names[-2:] == [f"{other}/d0.jpg", f"{root}/d2.png"]


def test_unreadable_images_are_named_before_anything_runs_or_skipped_when_asked(photos):
    root, _ = photos
    (root / "cut.png").write_bytes((root / "d2.png").read_bytes()[:40])  # a cut-off download
    files = find_images([str(root)])
    with pytest.raises(ValueError, match=r"1 of 7 files are not readable images: cut.png: .*--skip-bad-images"):
        check_images(files)
    said = []
    kept = check_images(files, skip_bad=True, warn=said.append)
    assert [n for n, _ in kept] == [n for n, _ in files if n != "cut.png"] and said[0].startswith("skipped cut.png")
    with pytest.raises(ValueError, match="none of the 1 files is a readable image"):
        check_images([("cut.png", root / "cut.png")], skip_bad=True, warn=said.append)


def test_predictions_are_the_models_own_through_its_eval_transform(photos):
    root, digits = photos
    model = build_model("resnet18", 10, 32).eval()
    clf = Classifier(model, "resnet18", digits.classes, eval_config(data_config(model, 32)), "0" * 32, "test")
    files = find_images([str(root)])
    got = list(predict(clf, files, batch_size=4, top_k=3))
    assert [name for name, _ in got] == [name for name, _ in files]
    for (_, path), (_, top) in zip(files, got, strict=True):
        with torch.inference_mode():
            probs = model(clf.transform()(Image.open(path).convert("RGB"))[None]).softmax(1)[0]
        assert top[0] == (digits.classes[int(probs.argmax())], pytest.approx(float(probs.max()), abs=1e-5))
        assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("t")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_the_default_model_is_the_champion_the_latest_sweep_registered(store):
    with pytest.raises(LookupError, match="no sweep in the tracking store .* has a champion yet"):
        champion_of_latest_sweep(store)
    store.create_registered_model("digits")
    for sweep, version in (("sweep-1", "1"), ("sweep-2", "2")):
        with mlflow.start_run(run_name=sweep, tags={"sweep": sweep}) as parent:
            with mlflow.start_run(nested=True) as trial:
                pass
            store.create_model_version("digits", f"runs:/{trial.info.run_id}/model", trial.info.run_id)
            mlflow.set_tag("champion", f"digits@champion (version {version})")
    store.set_registered_model_alias("digits", "champion", "1")  # the alias moved back: the latest sweep still wins
    uri, found = champion_of_latest_sweep(store)
    assert uri == "models:/digits/2" and found == "digits version 2 (champion of sweep-2)"
    run_id, _ = resolve_run(None, store)
    assert run_id == store.get_model_version("digits", "2").run_id
    assert resolve_run("models:/digits@champion", store)[0] == store.get_model_version("digits", "1").run_id
    assert resolve_run(run_id, store)[0] == resolve_run(f"runs:/{run_id}/model", store)[0] == run_id
    assert parent.info.run_id != run_id


def test_the_model_line_names_the_trials_run_once():
    run = "0" * 32
    named = [Classifier(None, "resnet18", [], {}, run, found).named for found in (f"run {run}", "digits version 2")]
    assert named == [f"run {run}", f"digits version 2, run {run}"]


def test_a_bad_model_reference_is_refused_with_what_is_allowed(store, photos, capsys):
    root, _ = photos
    with pytest.raises(LookupError, match="expected models:/NAME@ALIAS, models:/NAME/VERSION"):
        resolve_run("my-best-model", store)
    with pytest.raises(LookupError, match="--model models:/nope@champion: not found in sqlite"):
        resolve_run("models:/nope@champion", store)
    assert main([str(root), "--model", "models:/nope/1"]) == 2
    assert "error: --model models:/nope/1: not found" in capsys.readouterr().err
    assert main([str(root), "--top-k", "0"]) == 2


def test_a_mistyped_store_is_named_and_never_created(photos, tmp_path, capsys):
    """predict and export only read a sweep's store: a path that holds none is said, not made an empty one."""
    from analysis.export import main as export

    root, _ = photos
    typo = tmp_path / "mlflw.db"
    try:
        assert main([str(root), "--tracking-uri", f"sqlite:///{typo}"]) == 2
        assert export(["--tracking-uri", f"sqlite:///{typo}"]) == 2
    finally:
        mlflow.set_tracking_uri(None)
    err = capsys.readouterr().err
    assert err.count(f"error: tracking store sqlite:///{typo}: there is no database {typo}.") == 2
    assert "Traceback" not in err and not typo.exists()
