"""Bad inputs to every command: each fails with one line on stderr that names the culprit, the
right exit code, no traceback, and nothing changed outside the command's own output.

The cases run in-process through `sugar.cli.main` from an empty working folder, against shared
fixtures built once: a small world, two tiny models, a documents file and an index of it, broken
copies of the model and the index, a training run with a checkpoint, and folders the commands
must not touch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from sugar.cli import main
from tiny_model import tiny_model_config

TRAIN_MODEL = json.dumps(tiny_model_config(256))
NOT_UTF8 = "caf\udce9"  # how Python hands over the bytes b"caf\xe9" (Latin-1, not UTF-8) from argv


@dataclass
class Lab:
    root: Path
    paths: dict[str, str]

    def expand(self, argv: list[str]) -> list[str]:
        """Arguments with each {name} replaced by the fixture's path (JSON braces stay as they are)."""
        expanded = []
        for argument in argv:
            for name, path in self.paths.items():
                argument = argument.replace("{" + name + "}", path)
            expanded.append(argument)
        return expanded


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        state[str(path.relative_to(root))] = (info.st_size if path.is_file() else -1, info.st_mtime_ns)
    return state


def train_args(world: str, out: str, *extra: str) -> list[str]:
    return [
        "train", "--no-progress", "stage=base", f"world={world}", f"output_dir={out}", f"model_overrides={TRAIN_MODEL}",
        "mix={captions: 2, vqa: 1}", "log_every=1", *extra,
    ]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    from sugar.models import SugarModel
    from sugar.train.examples import tokenizer_corpus
    from sugar.world import build_world

    root = tmp_path_factory.mktemp("lab")
    world = root / "world"
    build_world(world, seed=0, scale="small", progress=False, workers=1)
    corpus = tokenizer_corpus(world)
    for name, seed in (("model", 0), ("model_b", 1)):
        SugarModel.from_preset("tiny", tokenizer_corpus=corpus, seed=seed, **tiny_model_config(64)).save_pretrained(root / name)

    kb = (world / "rag" / "kb.jsonl").read_text().replace('"images/', '"world/images/').splitlines()
    (root / "docs.jsonl").write_text("\n".join(kb[:4]) + "\n")
    (root / "other_docs.jsonl").write_text("\n".join(kb[4:8]) + "\n")
    (root / "empty.jsonl").write_text("")
    (root / "bad.jsonl").write_text(kb[0] + "\n{not json\n")
    missing_image = json.loads(kb[0])
    missing_image["segments"][0]["path"] = "world/images/nowhere.png"
    (root / "missing_image.jsonl").write_text(json.dumps(missing_image) + "\n")
    (root / "notes.txt").write_text("not an image\n")
    (root / "afile").write_text("a plain file\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "precious.txt").write_text("someone's work\n")
    (root / "config_list.yaml").write_text("- learning_rate\n- 0.1\n")
    (root / "config_bad.yaml").write_text("steps: [1, 2\nalpha: 1\n")
    (root / "config_binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (root / "runs").mkdir()

    broken = {
        "truncated": lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
        "garbage": _garbage_weights,
        "mismatch": lambda d: _edit_config(d, head_dim=48),
        "no_tokenizer": lambda d: (d / "tokenizer.json").unlink(),
        "bad_config": lambda d: (d / "sugar_config.json").write_text("{head_dim: 16"),
    }
    for name, damage in broken.items():
        shutil.copytree(root / "model", root / name)
        damage(root / name)

    paths = {name: str(root / name) for name in (
        "world", "model", "model_b", "docs.jsonl", "other_docs.jsonl", "empty.jsonl", "bad.jsonl",
        "missing_image.jsonl", "notes.txt", "afile", "foreign", "config_list.yaml", "config_bad.yaml",
        "config_binary.yaml", "runs", *broken,
    )}
    paths = {k.replace(".", "_"): v for k, v in paths.items()}
    paths["image"] = str(world / "images" / "kb_0000.png")
    paths["nothing"] = str(root / "does-not-exist")

    # an index of docs.jsonl built by `model`, and a copy with a damaged FAISS file
    assert main(["index", "build", "--model", paths["model"], "--input", paths["docs_jsonl"], "--out", str(root / "index")]) == 0
    shutil.copytree(root / "index", root / "bad_index")
    (root / "bad_index" / "index.faiss").write_bytes(b"\0" * 64)
    paths["index"], paths["bad_index"] = str(root / "index"), str(root / "bad_index")

    # a base run of one step with its checkpoint, for the --resume cases
    paths["ckpt"] = str(root / "runs" / "ckpt")
    assert main(train_args(paths["world"], paths["ckpt"], "steps=1", "checkpoint_every=1")) == 0
    return Lab(root, paths)


def _garbage_weights(folder: Path) -> None:
    """A few KiB of 0xFF bytes in the middle of the tensor data: every float there is NaN."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def _edit_config(folder: Path, **values: object) -> None:
    path = folder / "sugar_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


ENC = ["encode", "--model", "{model}", "--input", "{docs_jsonl}"]
BUILD = ["index", "build", "--model", "{model}", "--input", "{docs_jsonl}"]
SEARCH = ["index", "search", "--model", "{model}", "--index", "{index}"]
RAG = ["generate", "--model", "{model}", "--index", "{index}", "--text", "What lives here?"]
EVAL = ["eval", "--model", "{model}", "--world", "{world}", "--bench", "retrieval", "--no-progress"]
FIT = ["teachers", "fit", "--world", "{world}", "--no-progress"]
NEW = "{runs}/new"

# (case id, arguments, exit code, what stderr must name)
CASES: list[tuple[str, list[str], int, str]] = [
    # sugar (no command / unknown command)
    ("unknown-command", ["fly"], 2, "fly"),
    # encode
    ("encode-model-missing", ["encode", "--model", "{nothing}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "does-not-exist"),
    ("encode-model-not-a-model", ["encode", "--model", "{world}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "sugar_config.json"),
    ("encode-model-truncated", ["encode", "--model", "{truncated}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "truncated/model.safetensors"),
    ("encode-model-garbage-weights", ["encode", "--model", "{garbage}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "NaN"),
    ("encode-config-disagrees-with-weights", ["encode", "--model", "{mismatch}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "mismatch/sugar_config.json"),
    ("encode-tokenizer-missing", ["encode", "--model", "{no_tokenizer}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "tokenizer.json"),
    ("encode-config-not-json", ["encode", "--model", "{bad_config}", "--input", "{docs_jsonl}", "--out", NEW + ".st"], 2, "bad_config/sugar_config.json"),
    ("encode-input-missing", ["encode", "--model", "{model}", "--input", "{nothing}", "--out", NEW + ".st"], 2, "--input"),
    ("encode-input-empty", ["encode", "--model", "{model}", "--input", "{empty_jsonl}", "--out", NEW + ".st"], 2, "empty.jsonl"),
    ("encode-input-bad-json", ["encode", "--model", "{model}", "--input", "{bad_jsonl}", "--out", NEW + ".st"], 2, "bad.jsonl:2"),
    ("encode-input-image-missing", ["encode", "--model", "{model}", "--input", "{missing_image_jsonl}", "--out", NEW + ".st"], 2, "nowhere.png"),
    ("encode-format-unknown", [*ENC, "--format", "csv", "--out", NEW + ".st"], 2, "--format"),
    ("encode-batch-size-zero", [*ENC, "--batch-size", "0", "--out", NEW + ".st"], 2, "--batch-size"),
    ("encode-image-root-missing", ["encode", "--model", "{model}", "--input", "{docs_jsonl}", "--image-root", "{nothing}", "--out", NEW + ".st"], 2, "--image-root"),
    ("encode-out-is-a-folder", [*ENC, "--out", "{foreign}"], 2, "--out"),
    ("encode-out-is-someone-elses-file", [*ENC, "--out", "{afile}"], 2, "afile"),
    ("encode-out-under-a-file", [*ENC, "--out", "{afile}/x.safetensors"], 2, "afile"),
    # index build
    ("index-build-out-is-a-foreign-folder", [*BUILD, "--out", "{foreign}"], 2, "foreign"),
    ("index-build-out-is-a-file", [*BUILD, "--out", "{afile}"], 2, "afile"),
    ("index-build-input-empty", ["index", "build", "--model", "{model}", "--input", "{empty_jsonl}", "--out", NEW], 2, "empty.jsonl"),
    ("index-build-model-garbage", ["index", "build", "--model", "{garbage}", "--input", "{docs_jsonl}", "--out", NEW], 2, "garbage/model.safetensors"),
    # index search
    ("search-k-zero", [*SEARCH, "--text", "a red circle", "-k", "0"], 2, "-k"),
    ("search-k-not-a-number", [*SEARCH, "--text", "a red circle", "-k", "two"], 2, "-k"),
    ("search-index-not-an-index", ["index", "search", "--model", "{model}", "--index", "{foreign}", "--text", "x"], 2, "index.faiss"),
    ("search-index-faiss-corrupt", ["index", "search", "--model", "{model}", "--index", "{bad_index}", "--text", "x"], 2, "bad_index/index.faiss"),
    ("search-model-did-not-build-index", ["index", "search", "--model", "{model_b}", "--index", "{index}", "--text", "x"], 2, "--model"),
    ("search-no-query", SEARCH, 2, "--text"),
    ("search-image-missing", [*SEARCH, "--image", "{nothing}"], 2, "--image"),
    ("search-image-not-an-image", [*SEARCH, "--image", "{notes_txt}"], 2, "notes.txt"),
    ("search-text-not-utf8", [*SEARCH, "--text", NOT_UTF8], 2, "UTF-8"),
    # generate
    ("generate-documents-not-indexed", [*RAG, "--documents", "{other_docs_jsonl}"], 2, "--documents"),
    ("generate-index-without-documents", RAG, 2, "--documents"),
    ("generate-documents-without-index", ["generate", "--model", "{model}", "--documents", "{docs_jsonl}", "--text", "x"], 2, "--documents"),
    ("generate-max-new-tokens-negative", ["generate", "--model", "{model}", "--text", "x", "--max-new-tokens", "-1"], 2, "--max-new-tokens"),
    ("generate-k-zero", [*RAG, "--documents", "{docs_jsonl}", "-k", "0"], 2, "-k"),
    ("generate-model-garbage-weights", ["generate", "--model", "{garbage}", "--text", "x"], 2, "NaN"),
    ("generate-no-prompt", ["generate", "--model", "{model}"], 2, "--text"),
    ("generate-text-not-utf8", ["generate", "--model", "{model}", "--text", NOT_UTF8], 2, "UTF-8"),
    # eval
    ("eval-model-missing", ["eval", "--model", "{nothing}", "--world", "{world}", "--out", NEW], 2, "--model"),
    ("eval-bench-unknown", [*EVAL, "--bench", "speed", "--out", NEW], 2, "speed"),
    ("eval-world-not-a-world", ["eval", "--model", "{model}", "--world", "{foreign}", "--out", NEW], 2, "world.json"),
    ("eval-no-world-no-data", ["eval", "--model", "{model}", "--out", NEW], 2, "--world"),
    ("eval-limit-negative", [*EVAL, "--limit", "-1", "--out", NEW], 2, "--limit"),
    ("eval-batch-size-zero", [*EVAL, "--batch-size", "0", "--out", NEW], 2, "--batch-size"),
    ("eval-split-unknown", [*EVAL, "--split", "dev", "--out", NEW], 2, "--split"),
    ("eval-teachers-not-fitted", [*EVAL, "--teachers", "{foreign}", "--out", NEW], 2, "suite.json"),
    ("eval-out-is-a-file", [*EVAL, "--out", "{afile}"], 2, "afile"),
    ("eval-model-truncated", ["eval", "--model", "{truncated}", "--world", "{world}", "--out", NEW], 2, "model.safetensors"),
    # train
    ("train-config-missing", ["train", "--config", "{nothing}"], 2, "--config"),
    ("train-config-not-a-mapping", ["train", "--config", "{config_list_yaml}"], 2, "config_list.yaml"),
    ("train-config-invalid-yaml", ["train", "--config", "{config_bad_yaml}"], 2, "config_bad.yaml:"),
    ("train-config-not-text", ["train", "--config", "{config_binary_yaml}"], 2, "config_binary.yaml"),
    ("train-override-wrong-type", train_args("{world}", NEW, "learning_rate=fast"), 2, "learning_rate"),
    ("train-override-unknown-key", train_args("{world}", NEW, "learning_rat=0.1"), 2, "learning_rat"),
    ("train-override-not-key-value", train_args("{world}", NEW, "steps"), 2, "steps"),
    ("train-override-bad-mix-entry", train_args("{world}", NEW, "mix.vqa=many"), 2, "mix.vqa"),
    ("train-override-model-field-unknown", train_args("{world}", NEW, "model_overrides.head_dimension=8"), 2, "head_dimension"),
    ("train-override-not-utf8", train_args("{world}", NEW, f"output_dir={NOT_UTF8}"), 2, "KEY=VALUE"),
    ("train-steps-zero", train_args("{world}", NEW, "steps=0"), 2, "steps"),
    ("train-world-missing", train_args("{nothing}", NEW), 2, "world"),
    ("train-teachers-missing", [*train_args("{world}", NEW), "stage=sugar", "teachers={foreign}"], 2, "teachers"),
    ("train-init-from-garbage", train_args("{world}", NEW, "init_from={garbage}"), 2, "garbage/model.safetensors"),
    ("train-init-from-truncated", train_args("{world}", NEW, "init_from={truncated}"), 2, "model.safetensors"),
    ("train-output-dir-is-a-file", train_args("{world}", "{afile}"), 2, "output_dir"),
    ("train-resume-nothing", [*train_args("{world}", NEW, "steps=2"), "--resume"], 2, "nothing to resume"),
    ("train-resume-config-changed", [*train_args("{world}", "{ckpt}", "steps=2", "learning_rate=0.5", "alpha=0.5"), "--resume"], 2, "learning_rate: 0.001 -> 0.5"),
    ("train-checkpoints-without-resume", train_args("{world}", "{ckpt}", "steps=2"), 2, "--resume"),
    # world
    ("world-out-is-a-file", ["world", "--out", "{afile}", "--quiet"], 2, "afile"),
    ("world-out-is-a-foreign-folder", ["world", "--out", "{foreign}", "--quiet"], 2, "foreign"),
    ("world-seed-negative", ["world", "--out", NEW, "--seed", "-1"], 2, "--seed"),
    ("world-image-size-too-small", ["world", "--out", NEW, "--image-size", "8"], 2, "--image-size"),
    ("world-scale-unknown", ["world", "--out", NEW, "--scale", "huge"], 2, "--scale"),
    ("world-workers-zero", ["world", "--out", NEW, "--workers", "0"], 2, "--workers"),
    # teachers fit
    ("fit-no-data", ["teachers", "fit", "--out", NEW], 2, "--world"),
    ("fit-world-missing", ["teachers", "fit", "--world", "{nothing}", "--out", NEW], 2, "--world"),
    ("fit-captions-missing", ["teachers", "fit", "--captions", "{nothing}", "--out", NEW], 2, "--captions"),
    ("fit-image-root-missing", [*FIT, "--image-root", "{nothing}", "--out", NEW], 2, "--image-root"),
    ("fit-out-is-a-file", [*FIT, "--out", "{afile}"], 2, "afile"),
    ("fit-out-is-a-foreign-folder", [*FIT, "--out", "{foreign}"], 2, "foreign"),
    ("fit-epochs-zero", [*FIT, "--epochs", "0", "--out", NEW], 2, "--epochs"),
    ("fit-lr-negative", [*FIT, "--lr", "-0.1", "--out", NEW], 2, "--lr"),
    ("fit-device-unknown", [*FIT, "--device", "abacus", "--out", NEW], 2, "--device"),
    # demo
    ("demo-out-is-a-file", ["demo", "--out", "{afile}"], 2, "afile"),
    ("demo-out-is-a-foreign-folder", ["demo", "--out", "{foreign}"], 2, "foreign"),
    ("demo-base-steps-zero", ["demo", "--out", NEW, "--base-steps", "0"], 2, "--base-steps"),
    ("demo-override-wrong-type", ["demo", "--out", NEW, "alpha=strong"], 2, "alpha"),
    ("demo-config-missing", ["demo", "--out", NEW, "--config", "{nothing}"], 2, "--config"),
    # ablate
    ("ablate-seeds-zero", ["ablate", "--seeds", "0", "--out", NEW], 2, "--seeds"),
    ("ablate-out-is-a-foreign-folder", ["ablate", "--out", "{foreign}", "--results", NEW], 2, "foreign"),
    ("ablate-override-unknown-key", ["ablate", "--out", NEW, "--results", NEW, "nosuchkey=1"], 2, "nosuchkey"),
]


@pytest.mark.parametrize(("argv", "code", "culprit"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(
    lab: Lab, argv: list[str], code: int, culprit: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder shows up here
    monkeypatch.delenv("SUGAR_DEBUG", raising=False)
    before = snapshot(lab.root)
    capsys.readouterr()
    assert main(lab.expand(argv)) == code
    err = capsys.readouterr().err
    assert culprit in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(lab.root) == before
    assert not list(tmp_path.iterdir())


def test_cases_cover_every_command() -> None:
    commands = {argv[0] if argv[0] not in ("index", "teachers") else " ".join(argv[:2]) for _, argv, _, _ in CASES}
    assert {"encode", "index build", "index search", "generate", "eval", "train", "world", "teachers fit", "demo", "ablate"} <= commands
    assert len(CASES) >= 40


def test_debug_shows_the_traceback(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(lab.expand(["--debug", *SEARCH, "--text", "x", "-k", "3", "--index", "{foreign}"])) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("SUGAR_DEBUG", "1")
    assert main(lab.expand(["index", "search", "--model", "{model}", "--index", "{foreign}", "--text", "x"])) == 2
    assert "Traceback" in capsys.readouterr().err


def test_index_build_replaces_only_its_own_earlier_index(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "index"
    argv = lab.expand([*BUILD, "--out", str(out)])
    assert main(argv) == 0 and main(argv) == 0  # the second run replaces the first index
    assert {p.name for p in out.iterdir()} == {"index.faiss", "ids.json", "meta.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model_sha256"] and meta["documents_sha256"]
    (out / "notes.md").write_text("mine")  # now the folder holds something the command did not write
    assert main(argv) == 2 and (out / "notes.md").read_text() == "mine"
    assert "--out" in capsys.readouterr().err


def test_rag_with_the_indexed_documents_still_works(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(lab.expand([*RAG, "--documents", "{docs_jsonl}", "-k", "1", "--max-new-tokens", "3"])) == 0
    assert '"retrieved"' in capsys.readouterr().err


def test_encode_does_not_create_the_vision_cache_a_model_remembers(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Models saved before the fix recorded the (relative) cache folder of their training run."""
    model = tmp_path / "old-model"
    shutil.copytree(lab.paths["model"], model)
    _edit_config(model, vision_cache_dir="runs/demo/vision-cache")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "vectors.safetensors"
    argv = ["encode", "--model", str(model), "--input", lab.paths["docs_jsonl"]]
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 0  # its own earlier output is replaced
    assert not list(work.iterdir())
    assert "wrote 4 embeddings" in capsys.readouterr().out


def test_saved_models_do_not_record_a_cache_folder(lab: Lab, tmp_path: Path) -> None:
    from sugar.models import SugarModel

    model = SugarModel.from_pretrained(lab.paths["model"], vision_cache_dir=str(tmp_path / "cache"))
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "sugar_config.json").read_text())["vision_cache_dir"] is None


def test_overrides_take_the_fields_types() -> None:
    from sugar.train.config import load_config

    config = load_config(None, ["learning_rate=3e-4", "steps=1e3", "alpha=1", "mix.vqa=2", "model_overrides.head_dim=32"])
    assert config.learning_rate == 3e-4 and isinstance(config.learning_rate, float)
    assert config.steps == 1000 and isinstance(config.steps, int) and isinstance(config.alpha, float)
    assert config.mix["vqa"] == 2 and config.model_overrides == {"head_dim": 32}


def test_config_file_values_take_the_fields_types(tmp_path: Path) -> None:
    from sugar.train.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 3e-4\nweight_decay: 1e-2\nsteps: 20\n")
    config = load_config(path)
    assert (config.learning_rate, config.weight_decay, config.steps) == (3e-4, 1e-2, 20)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning rate of 1e30 blows the weights up within a few steps; the step whose loss is NaN
    changes nothing, and the checkpoint of the step before it is the latest."""
    out = tmp_path / "run"
    argv = train_args(lab.paths["world"], str(out), "steps=6", "checkpoint_every=1", "learning_rate=1e30", "max_grad_norm=0")
    assert main(argv) == 1
    err = capsys.readouterr().err
    stopped = re.search(r"stopped at step (\d+): the loss is not finite", err)
    assert stopped is not None and "Traceback" not in err, err
    last_good = f"step_{int(stopped.group(1)) - 1:08d}"
    assert last_good in err
    assert (out / "checkpoints" / "latest").read_text().strip() == last_good
    assert not (out / "model").exists()


def test_resume_with_an_unchanged_config_continues(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    shutil.copytree(lab.paths["ckpt"], out)
    # a run-neutral key (log_every) may change; the path to the world may be written another way
    argv = train_args(os.path.relpath(lab.paths["world"]), str(out), "steps=1", "checkpoint_every=1", "log_every=5")
    assert main([*argv, "--resume"]) == 0
    assert "saved model" in capsys.readouterr().out


def test_world_help_names_the_default_scale(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["world", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: small" in text and ">= 20k" not in text


def test_format_choices_match_the_loaders() -> None:
    from sugar.data import FORMATS as LOADER_FORMATS
    from sugar.retrieval.cli import FORMATS

    assert sorted(FORMATS) == sorted(LOADER_FORMATS)


def test_images_are_decoded_upright(tmp_path: Path) -> None:
    """A photo stored sideways with EXIF Orientation 6 (rotate 90 degrees clockwise to view)."""
    from sugar.data import ImageRef

    stored = Image.new("RGB", (4, 2), (0, 0, 255))
    stored.putpixel((0, 0), (255, 0, 0))  # red at the stored top-left
    exif = stored.getexif()
    exif[0x0112] = 6
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    upright = ImageRef(path).load()
    assert upright.size == (2, 4)
    assert upright.getpixel((1, 0)) == (255, 0, 0)  # the stored top-left is now the top-right
