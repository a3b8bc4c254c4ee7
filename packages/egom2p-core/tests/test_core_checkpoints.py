"""Checkpoint files: the directory format, atomic writes, the path rules, the safe torch loader, config JSON,
dtype names, and Hugging Face Hub ids (the offline cache where huggingface_hub is installed)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from egom2p.core.checkpoints import (
    load_torch_file,
    parse_dtype,
    read_checkpoint_dir,
    read_config_json,
    resolve_checkpoint,
    write_atomic,
    write_checkpoint_dir,
)
from egom2p.core.errors import MissingExtraError
from egom2p.core.hub import is_hub_id, require_hub, upload_folder

CONFIG = {"kind": "cam", "dim": 96, "depth": [2, 2], "eps": 1e-6, "note": None}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of several shapes and dtypes, one of them a non-contiguous view."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(6, 4, generator=g, dtype=torch.float64)
    return {
        "encoder.weight": torch.randn(5, 3, generator=g),
        "quantize._codebook.embed": torch.randn(16, 8, generator=g).to(torch.bfloat16),
        "quantize._codebook.initted": torch.ones(1),
        "counts": torch.randint(0, 100, (7,), generator=g),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "transposed": wide.t(),  # stored contiguous
        "empty": torch.zeros(0, 3),
    }


def _assert_same(loaded: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        assert torch.equal(loaded[key], value), key


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_checkpoint_dir_round_trip_is_exact_and_leaves_only_its_files(tmp_path):
    state = _state()
    write_checkpoint_dir(tmp_path / "a" / "ckpt", state, CONFIG)  # parents are created
    folder = tmp_path / "a" / "ckpt"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "integrity.json", "model.safetensors"]
    weights, config = read_checkpoint_dir(folder)
    _assert_same(weights, state)
    assert config == CONFIG and json.loads((folder / "config.json").read_text()) == CONFIG
    # safetensors writes 0600; the files get what any new file gets, so a checkpoint can be shared.
    assert {stat.S_IMODE((folder / n).stat().st_mode) for n in ("config.json", "model.safetensors")} == {_umask_mode()}
    # Overwriting replaces both files and leaves no temporary ones.
    other = _state(seed=1)
    write_checkpoint_dir(folder, other, {**CONFIG, "dim": 48})
    weights, config = read_checkpoint_dir(folder)
    _assert_same(weights, other)
    assert config["dim"] == 48 and sorted(p.name for p in folder.iterdir()) == [
        "config.json", "integrity.json", "model.safetensors"]


def test_a_config_that_is_not_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_checkpoint_dir(tmp_path / "bad", _state(), {"modalities": {"rgb"}})
    assert not (tmp_path / "bad").exists()


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "file.bin"
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"old"))

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_reading_a_broken_directory_names_the_file_in_one_line(tmp_path):
    folder = tmp_path / "ckpt"
    write_checkpoint_dir(folder, _state(), CONFIG)
    (folder / "integrity.json").unlink()  # the damage is a broken file, not a changed one
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: not a readable JSON config") as err:
        read_checkpoint_dir(folder)
    assert "\n" not in str(err.value)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json: expected a JSON object of config fields, got list"):
        read_config_json(folder / "config.json")
    (folder / "config.json").write_text('{"dim": 48, "depth": 2, "dim": 96}')  # JSON would keep 96, silently
    with pytest.raises(ValueError, match=r"config.json: duplicate key 'dim'"):
        read_config_json(folder / "config.json")
    (folder / "config.json").write_text('{"outer": {"a": 1, "a": 2}}')  # nested objects too
    with pytest.raises(ValueError, match=r"config.json: duplicate key 'a'"):
        read_config_json(folder / "config.json")
    (folder / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"config.json: not a readable JSON config"):
        read_config_json(folder / "config.json")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file") as err:
        read_checkpoint_dir(folder)
    assert "\n" not in str(err.value)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"ckpt: no config.json"):
        read_checkpoint_dir(folder)


def _step(run: Path, name: str, complete: bool = True) -> Path:
    """A trainer step directory: weights + config when ``complete``, and the train state we ignore."""
    step = run / "checkpoints" / name
    step.mkdir(parents=True)
    if complete:
        write_checkpoint_dir(step, _state(), CONFIG)
    torch.save({"step": 1}, step / "train_state.pt")
    return step


def test_resolve_finds_directories_the_newest_complete_step_and_original_files(tmp_path):
    run = tmp_path / "run"
    step2, step10 = _step(run, "step-2"), _step(run, "step-10")
    _step(run, "step-11", complete=False)  # interrupted: no weights yet
    (run / "checkpoints" / "step-12.tmp").mkdir()  # being written
    write_checkpoint_dir(run / "checkpoints" / "step-13.tmp-99", _state(), CONFIG)  # complete, but temporary
    (run / "checkpoints" / "step-14").write_text("a file, not a directory")
    assert resolve_checkpoint(step2) == step2
    assert resolve_checkpoint(run) == step10  # numerically: 10 > 2
    assert resolve_checkpoint(str(run / "checkpoints")) == step10
    for suffix in (".pth", ".pt"):
        original = tmp_path / f"checkpoint-main{suffix}"
        torch.save({"model": _state()}, original)
        assert resolve_checkpoint(original) == original


def test_resolve_errors_name_the_path(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such file or directory; expected a directory with model.safetensors"):
        resolve_checkpoint(tmp_path / "nowhere")
    _step(tmp_path / "run", "step-4", complete=False)
    with pytest.raises(FileNotFoundError, match=r"run: not a checkpoint.*checkpoints/step-<N>/"):
        resolve_checkpoint(tmp_path / "run")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"weights.bin: not a checkpoint"):
        resolve_checkpoint(tmp_path / "weights.bin")
    # A relative path that happens to look like org/repo: "./" marks it local, so no Hub lookup.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"org/repo: no such file or directory; expected"):
        resolve_checkpoint("./org/repo")


def test_a_hub_id_without_the_extra_names_the_install(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(FileNotFoundError, match=r"^org/repo: no such file or directory \(if it is a Hugging Face Hub id: "
                                                r".*pip install 'egom2p-core\[hub\]'\)$"):
        resolve_checkpoint("org/repo")
    with pytest.raises(FileNotFoundError, match=r"pip install 'egom2p-tokenizers\[hub\]'"):
        resolve_checkpoint("org/repo", install_hint="pip install 'egom2p-tokenizers[hub]'")
    with pytest.raises(MissingExtraError, match=r"need huggingface-hub: pip install 'egom2p-model\[hub\]'$"):
        require_hub("pip install 'egom2p-model[hub]'")
    # An upload checks the id and the folder before it needs huggingface_hub.
    with pytest.raises(ValueError, match="'not/a/repo' is not a Hub repository id"):
        upload_folder(tmp_path, "not/a/repo")
    with pytest.raises(FileNotFoundError, match=r"missing \['model.safetensors', 'config.json'\]"):
        upload_folder(tmp_path, "org/repo")
    write_checkpoint_dir(tmp_path / "ckpt", _state(), CONFIG)
    with pytest.raises(MissingExtraError, match=r"pip install 'egom2p-core\[hub\]'"):
        upload_folder(tmp_path / "ckpt", "org/repo")


def test_a_missing_path_under_a_local_folder_is_never_sent_to_the_hub(tmp_path, monkeypatch):
    from egom2p.core import hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(hub, "download_checkpoint", lambda *a, **k: pytest.fail("sent to the Hub"))
    with pytest.raises(FileNotFoundError, match=r"^runs/demo: no such file or directory \(not taken for a Hub id: the "
                                                r"folder runs is here\)"):
        resolve_checkpoint("runs/demo")


def test_hub_ids_and_local_names():
    for repo in ("org/repo", "my-org/egom2p_base.v1", "a/b", "Org9/Tiny-VQ.2"):
        assert is_hub_id(repo), repo
    for local in ("runs", "./org/repo", "/abs/path", "a/b/c", "org/checkpoint-main.pth", "org/model.pt", "../x",
                  "org/", "/repo", "~/x", "org/..x", "-org/repo", "org/re po", ""):
        assert not is_hub_id(local), local


class Custom:
    """A type the safe loader does not know (pickled by reference as test_core_checkpoints.Custom)."""


class RunsCode:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_torch_file_reads_tensors_and_the_allowed_args(tmp_path):
    state = _state()
    args = argparse.Namespace(model="vqvae", in_domains="tok_cam", epochs=3)
    torch.save({"model": state, "args": args, "epoch": 3, "scaler": {"scale": 65536.0}}, tmp_path / "c.pth")
    loaded = load_torch_file(tmp_path / "c.pth")
    _assert_same(loaded["model"], state)
    assert loaded["args"] == args and loaded["epoch"] == 3 and loaded["scaler"] == {"scale": 65536.0}
    # safe_globals widens what is allowed (and replaces the default: a Namespace is refused without it).
    torch.save({"extra": Custom()}, tmp_path / "custom.pth")
    assert isinstance(load_torch_file(tmp_path / "custom.pth", safe_globals=(Custom,))["extra"], Custom)
    with pytest.raises(ValueError, match="holds argparse.Namespace"):
        load_torch_file(tmp_path / "c.pth", safe_globals=())


@pytest.mark.parametrize("as_zip", [True, False], ids=["torch-zip", "bare-pickle"])
def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path, as_zip):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    if as_zip:
        torch.save({"model": _state(), "payload": RunsCode(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"payload": RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError) as err:
        load_torch_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: holds ") and "system" in message.split(", which")[0]
    assert "weights_only=True" in message and "evil.safe.pth" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("payload, refused", [
    ({"extra": Custom()}, "test_core_checkpoints.Custom"),
    ({"args": argparse.Namespace(output_dir=pathlib.PurePosixPath("/runs"))}, "PurePosixPath"),
])
def test_unsafe_types_are_named_and_the_conversion_in_the_message_works(tmp_path, payload, refused):
    state = _state()
    args = payload.get("args", argparse.Namespace(model="vqvae", num_frames=60, domains=["cam"], note=None))
    torch.save({"model": state, **payload, "args": args}, tmp_path / "checkpoint-cam.pth")
    with pytest.raises(ValueError) as err:
        load_torch_file(tmp_path / "checkpoint-cam.pth")
    message = str(err.value)
    named = message.split(", which")[0]
    assert refused in named and "argparse" not in named  # the Namespace is allowed, so it is not named
    command = message.split('python -c "')[1].split('"')[0]
    exec(command, {})  # what the user runs once, on a file they trust
    converted = load_torch_file(tmp_path / "checkpoint-cam.safe.pth")
    _assert_same(converted["model"], state)
    plain = {k: v for k, v in vars(args).items() if not isinstance(v, pathlib.PurePath)}
    assert converted["args"] == plain  # plain values kept, the unsafe ones dropped


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04truncated zip"])
def test_non_torch_files_are_one_line_errors(tmp_path, content):
    (tmp_path / "junk.pth").write_bytes(content)
    with pytest.raises(ValueError, match=r"junk.pth: not a PyTorch checkpoint") as err:
        load_torch_file(tmp_path / "junk.pth")
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "missing.pth")


def test_parse_dtype():
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("torch.float16") is torch.float16
    assert parse_dtype("fp32") is torch.float32 and parse_dtype("half") is torch.float16
    assert parse_dtype(None) is None and parse_dtype(torch.float32) is torch.float32
    for bad in ("int64", torch.int8, "nonsense", "bool"):
        with pytest.raises(ValueError, match="floating torch dtype"):
            parse_dtype(bad)


def _cache_repo(hub_cache: Path, repo_id: str, files: dict[str, Path], refs: dict[str, str]) -> None:
    """The layout huggingface_hub keeps: models--org--name/{refs/<rev>, snapshots/<commit>/<file>}."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    for ref, commit in refs.items():
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (snapshot / name).write_bytes(source.read_bytes())


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, sys
    from egom2p.core.checkpoints import read_checkpoint_dir, resolve_checkpoint
    out = {}
    for name, repo, revision in [("main", "org/tiny", None), ("tagged", "org/tiny", "v1")]:
        folder = resolve_checkpoint(repo, revision)
        weights, config = read_checkpoint_dir(folder)
        out[name] = {"config": config, "weights": weights["encoder.weight"].flatten().tolist()}
    out["original"] = resolve_checkpoint("org/original").name
    for repo in ("org/none", "org/two"):
        try:
            resolve_checkpoint(repo)
        except FileNotFoundError as err:
            out[repo] = str(err)
    json.dump(out, sys.stdout)
""")


def test_hub_ids_resolve_from_the_offline_cache(tmp_path):
    pytest.importorskip("huggingface_hub")
    main, tagged = _state(seed=1), _state(seed=2)
    write_checkpoint_dir(tmp_path / "main", main, CONFIG)
    write_checkpoint_dir(tmp_path / "tagged", tagged, {**CONFIG, "dim": 48})
    torch.save({"model": main}, tmp_path / "checkpoint-cam.pth")
    torch.save({"model": main}, tmp_path / "checkpoint-gaze.pth")
    hub_cache = tmp_path / "hf_home" / "hub"
    names = ("model.safetensors", "config.json")
    _cache_repo(hub_cache, "org/tiny", {n: tmp_path / "main" / n for n in names}, {"main": "a" * 40})
    _cache_repo(hub_cache, "org/tiny", {n: tmp_path / "tagged" / n for n in names}, {"v1": "b" * 40})
    _cache_repo(hub_cache, "org/original", {"checkpoint-cam.pth": tmp_path / "checkpoint-cam.pth"}, {"main": "c" * 40})
    _cache_repo(hub_cache, "org/two", {n: tmp_path / n for n in ("checkpoint-cam.pth", "checkpoint-gaze.pth")},
                {"main": "d" * 40})
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["main"] == {"config": CONFIG, "weights": main["encoder.weight"].flatten().tolist()}
    assert out["tagged"] == {"config": {**CONFIG, "dim": 48}, "weights": tagged["encoder.weight"].flatten().tolist()}
    assert out["original"] == "checkpoint-cam.pth"
    assert out["org/none"].startswith("org/none: not a local path, and not available from the Hugging Face Hub")
    assert out["org/two"] == ("org/two: the Hub repository holds neither model.safetensors nor exactly one .pth/.pt "
                              "file (found ['checkpoint-cam.pth', 'checkpoint-gaze.pth'])")
    assert not any("\n" in message for message in (out["org/none"], out["org/two"]))
