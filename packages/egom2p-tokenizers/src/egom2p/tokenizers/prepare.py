"""Recordings -> aligned training shards of every modality they have (``egom2p-tokenize prepare``).

A recording is a folder named after it, holding an RGB video and, optionally, depth, a camera track and a gaze
track::

    P01/rgb.mp4                      any container FFmpeg reads (.mp4, .mov, .mkv, .avi, .webm)
    P01/depth.npy | depth/ | depth.mp4   (T, H, W) stack, PNG frames or a video: one depth frame per RGB frame
    P01/cam.tum | cam.txt | cam.npz | cam.npy    a camera track (egom2p.tokenizers.tracks; .npy needs --cam-fps)
    P01/gaze.txt | gaze.npz | gaze.npy           a gaze track in pixels (.npy needs --gaze-fps)

Every source starts at the same instant (its first frame or sample is time 0). The video is resampled to 8 fps,
its centred square resized to 256 and cut into back-to-back 2 s clips of 16 frames; the clip starting at second
2 k has the key ``<recording>_<60 k, 6 digits>`` (:mod:`egom2p.tokenizers.keys`), like the camera and gaze window
starting there. A sample is written when every modality the recording has covers its 2 s: a camera window with
a missing pose, a gaze window without any point, or a track that ends first drop the clip, and the summary counts
each reason.

The shards are ``root/<folder>/<dataset>/shard-NNNNNN.tar`` for the folders of the released modalities (``rgb``,
``depth``, ``cam``, ``gaze``), the same keys in the same order in each, so the loader zips them. A recording's
samples fill shards of their own (at most ``samples_per_shard`` each). The write follows core's rules
(:mod:`egom2p.core.dataset_write`): everything is written aside and moved in when the whole run is done, so a
reader never sees half a dataset. A killed run resumes: run the same command again and the recordings it finished
(kept aside with a manifest of the run's identity: options, tokenizers and input contents) are not encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from egom2p.core.atomic import fsync_dir
from egom2p.core.checkpoint_integrity import file_sha256
from egom2p.core.dataset_write import SHARD_NAME, begin_write, shard_name
from egom2p.core.layout import check_name
from egom2p.core.modalities import RELEASED_MODALITIES, load_modality_specs
from egom2p.core.progress import progress as progress_bar
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar

from .codec import WindowCodec
from .cosmos import CosmosVideoTokenizer
from .encode import codec_identity, earlier_runs, read_manifest, write_manifest
from .keys import FPS, window_key
from .recordings import SKIP_REASONS, counted, describe_skipped, read_recording
from .tracks import WINDOW_LENGTH
from .video import CLIP_FRAMES, VIDEO_FPS, VIDEO_SUFFIXES, depth_to_frames
from .video_io import clip_starts, read_depth, read_video_resampled, square_resize

__all__ = ["MANIFEST_NAME", "PrepareSummary", "Recording", "find_recordings", "prepare_dataset"]

MANIFEST_NAME = "egom2p-prepare.json"
_TRACK_SUFFIXES = {"cam": (".tum", ".txt", ".npz", ".npy"), "gaze": (".txt", ".npz", ".npy")}
_FOLDERS = {kind: spec.folder for kind, spec in
            ((name.removeprefix("tok_"), spec) for name, spec in load_modality_specs(RELEASED_MODALITIES).items())}
_CLIP_STEP = CLIP_FRAMES * FPS // VIDEO_FPS  # 60: a clip's 2 s in 30 fps frames, the key's unit
_FORMAT = 1


@dataclass(frozen=True)
class Recording:
    """One recording's source files (see the module docstring); ``name`` is its key stem."""

    name: str
    video: Path
    depth: Path | None = None
    cam: Path | None = None
    gaze: Path | None = None

    def sources(self) -> dict[str, Path]:
        """Modality -> file, for the modalities the recording has."""
        return {kind: path for kind, path in (("rgb", self.video), ("depth", self.depth), ("cam", self.cam),
                                               ("gaze", self.gaze)) if path is not None}


def _one(folder: Path, stem: str, suffixes: tuple[str, ...], what: str) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in suffixes)
    if len(found) > 1:
        raise ValueError(f"{folder}: more than one {what} ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def _recording(folder: Path) -> Recording:
    video = _one(folder, "rgb", VIDEO_SUFFIXES, "RGB video")
    if video is None:
        raise ValueError(f"{folder}: a recording folder needs an RGB video rgb.<{'|'.join(s[1:] for s in VIDEO_SUFFIXES)}>")
    depth = folder / "depth" if (folder / "depth").is_dir() else _one(folder, "depth", (".npy", *VIDEO_SUFFIXES), "depth")
    return Recording(check_name(folder.name, f"recording folder {folder}"), video, depth,
                     _one(folder, "cam", _TRACK_SUFFIXES["cam"], "camera track"),
                     _one(folder, "gaze", _TRACK_SUFFIXES["gaze"], "gaze track"))


def find_recordings(paths: list[str | os.PathLike]) -> list[Recording]:
    """The recordings of ``paths``: recording folders, dataset folders (their recording subfolders, by name) or
    ``.txt`` lists of recording folders (one per line, relative to the list; ``#`` comments). Raises ValueError
    naming the path for a folder that is neither, and for two recordings of one name (they would share keys)."""
    recordings: list[Recording] = []
    for path in map(Path, paths):
        if path.is_file() and path.suffix == ".txt":
            lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
            recordings += [_recording(path.parent / line) for line in lines if line]
        elif path.is_dir() and _one(path, "rgb", VIDEO_SUFFIXES, "RGB video") is not None:
            recordings.append(_recording(path))
        elif path.is_dir():
            subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not subfolders:
                raise ValueError(f"--input {path}: neither a recording folder (rgb.<video>) nor a folder of them")
            recordings += [_recording(p) for p in subfolders]
        else:
            raise FileNotFoundError(f"--input {path}: no such recording folder or .txt list")
    names: dict[str, Path] = {}
    for recording in recordings:
        if recording.name in names:
            raise ValueError(f"{recording.video.parent} and {names[recording.name]} are both recording "
                             f"{recording.name!r}: their samples would share keys; rename one")
        names[recording.name] = recording.video.parent
    if not recordings:
        raise ValueError("--input: no recordings")
    return recordings


@dataclass
class PrepareSummary:
    """What a run wrote, kept and skipped."""

    root: Path
    dataset: str
    folders: list[str]
    first_shard: int = 0
    shards: int = 0
    samples: int = 0
    recordings_done: int = 0
    recordings_kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def pattern(self) -> str:
        """The shard pattern of every folder written (for a data config)."""
        last = self.first_shard + self.shards - 1
        return f"{self.root}/[{','.join(self.folders)}]/{self.dataset}/shard-{{{0:06d}..{last:06d}}}.tar"

    def format(self) -> str:
        """One line: shards, samples, recordings, and the skipped clips by reason."""
        kept = f" ({self.recordings_kept} from an earlier run)" if self.recordings_kept else ""
        skipped = f"; skipped: {describe_skipped(self.skipped)}" if self.skipped else ""
        return (f"{counted(self.shards, 'shard')} per folder ({', '.join(self.folders)}), "
                f"{counted(self.samples, 'sample')} of {counted(self.recordings_done, 'recording')}{kept}{skipped}")


class _Tokenizers:
    """The tokenizers of a run and how each modality of a recording becomes token rows keyed like its clips."""

    def __init__(self, video: CosmosVideoTokenizer, cam: WindowCodec | None, gaze: WindowCodec | None,
                 cam_fps: float | None, gaze_fps: float | None) -> None:
        self.video, self.codecs, self.fps = video, {"cam": cam, "gaze": gaze}, {"cam": cam_fps, "gaze": gaze_fps}

    def check(self, recording: Recording) -> None:
        for kind in ("cam", "gaze"):
            if getattr(recording, kind) is not None and self.codecs[kind] is None:
                raise ValueError(f"{getattr(recording, kind)}: a {kind} track needs --{kind}-tokenizer")

    def windows(self, recording: Recording, kind: str, clip_keys: list[str]) -> tuple[dict[str, np.ndarray], Counter]:
        """Token rows of the track's 2 s windows that start with a clip, by key; and the clips it cannot cover."""
        codec = self.codecs[kind]
        track = read_recording(getattr(recording, kind), kind, fps=self.fps[kind], stride=_CLIP_STEP,
                               num_frames=WINDOW_LENGTH)
        keys = [window_key(recording.name, int(start)) for start in track.starts]
        wanted = set(clip_keys)
        rows = [i for i, key in enumerate(keys) if key in wanted]
        tokens = codec.encode(track.windows[rows]) if rows else np.empty((0, codec.model.num_tokens), np.int64)
        found = {keys[i]: row for i, row in zip(rows, tokens)}
        missing = Counter({f"clip without a {kind} window ({SKIP_REASONS[kind]} or past the track's end)":
                           sum(key not in found for key in clip_keys)})
        return found, +missing


def _video_tokens(tokenizers: _Tokenizers, recording: Recording) -> tuple[list[str], dict[str, np.ndarray]]:
    """The recording's clip keys and the rgb (and depth) token rows of its clips."""
    video = read_video_resampled(recording.video, VIDEO_FPS)  # streamed: memory grows with the 8 fps output only
    starts = clip_starts(len(video.frames))
    if not starts:
        raise ValueError(f"{recording.video}: {len(video.frames)} frames at {VIDEO_FPS} fps, shorter than one 2 s "
                         f"clip ({CLIP_FRAMES} needed)")
    keys = [window_key(recording.name, start // CLIP_FRAMES * _CLIP_STEP) for start in starts]
    frames = video.frames
    tokens = {"rgb": tokenizers.video.encode(np.stack([frames[s:s + CLIP_FRAMES] for s in starts]))}
    if recording.depth is not None:
        depth = read_depth(recording.depth)
        if len(depth) != video.source_frames:
            raise ValueError(f"{recording.depth}: {len(depth)} depth frames for the {video.source_frames} frames of "
                             f"{recording.video}; depth must have one frame per RGB frame")
        depth = square_resize(np.asarray(depth[video.source_index], dtype=np.float32))  # only the 8 fps frames
        tokens["depth"] = np.stack([tokenizers.video.encode(depth_to_frames(depth[s:s + CLIP_FRAMES],
                                                                            str(recording.depth))[0])
                                    for s in starts])
    return keys, tokens


def _aligned_samples(tokenizers: _Tokenizers, recording: Recording) -> tuple[list[str], dict[str, np.ndarray], Counter]:
    """The keys every modality of ``recording`` covers, each modality's token rows in that order, and the skips."""
    keys, tokens = _video_tokens(tokenizers, recording)
    by_key = {kind: dict(zip(keys, rows)) for kind, rows in tokens.items()}
    skipped: Counter[str] = Counter()
    for kind in ("cam", "gaze"):
        if getattr(recording, kind) is not None:
            by_key[kind], missing = tokenizers.windows(recording, kind, keys)
            skipped += missing
    kept = [key for key in keys if all(key in rows for rows in by_key.values())]
    return kept, {kind: np.stack([rows[key] for key in kept]) if kept else np.empty((0,)) for kind, rows in
                  by_key.items()}, skipped


def _fingerprint(recording: Recording) -> dict:
    """A recording's name and the SHA-256 of each of its sources (a folder: of its files in name order)."""
    files = {}
    for kind, path in recording.sources().items():
        parts = sorted(path.iterdir()) if path.is_dir() else [path]
        files[kind] = hashlib.sha256("".join(file_sha256(p) for p in parts).encode()).hexdigest()
    return {"name": recording.name, "files": files}


def _identity(tokenizers: _Tokenizers, samples_per_shard: int, first_shard: int) -> dict:
    """What decides the bytes of every recording's shards, besides the recording itself."""
    codecs = {kind: None if codec is None else codec_identity(codec) for kind, codec in tokenizers.codecs.items()}
    identity = {"format": _FORMAT, "video_tokenizer": tokenizers.video.digest, "codecs": codecs, "fps": tokenizers.fps,
                "samples_per_shard": samples_per_shard, "first_shard": first_shard}
    return json.loads(json.dumps(identity))  # as it reads back from the manifest (tuples become lists)


def _finished_recordings(manifest_path: Path, identity: dict, fingerprints: list[dict],
                         staged: dict[str, Path]) -> list[dict]:
    """The leading recordings that an interrupted run of the same identity finished from the same files, as long as
    their staged shards are whole (a changed or damaged one, and all after it, are encoded again)."""
    manifest = read_manifest(manifest_path)
    if manifest is None or manifest.get("identity") != identity:
        return []
    done = []
    for entry, fingerprint in zip(manifest.get("recordings", []), fingerprints):
        if entry.get("source") != fingerprint:
            break
        for index, keys in entry["shards"]:
            for directory in staged.values():
                try:
                    members = [key for key, _, _ in read_tar_members(str(directory / shard_name(index)))]
                except Exception:  # missing or damaged: this recording is encoded again
                    return done
                if members != keys:
                    return done
        done.append(entry)
    return done


def prepare_dataset(recordings: list[Recording], root: str | os.PathLike, dataset: str, *,
                    video_tokenizer: CosmosVideoTokenizer, cam: WindowCodec | None = None,
                    gaze: WindowCodec | None = None, cam_fps: float | None = None, gaze_fps: float | None = None,
                    samples_per_shard: int = 1000, overwrite: bool = False, append: bool = False,
                    progress: bool = False, on_resume: Callable[[int], None] | None = None) -> PrepareSummary:
    """Write the aligned shards of ``recordings`` into ``root/<folder>/<dataset>/`` (module docstring).

    The video tokenizer's ``digest`` (set by ``from_pretrained``) names its weights in the run's identity; without
    one, a rerun cannot tell its tokens apart and encodes everything again. A user mistake (a bad file, a
    missing tokenizer, a short video) raises ValueError or FileNotFoundError in one line naming it; what was
    finished stays aside for the next run of the same command, and the dataset itself is untouched.
    """
    if samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard must be >= 1, got {samples_per_shard}")
    if overwrite and append:
        raise ValueError("--overwrite and --append exclude each other: replace the dataset or add to it")
    tokenizers = _Tokenizers(video_tokenizer, cam, gaze, cam_fps, gaze_fps)
    kinds = [kind for kind in ("rgb", "depth", "cam", "gaze") if any(kind in r.sources() for r in recordings)]
    for recording in recordings:
        tokenizers.check(recording)
        if set(recording.sources()) != set(kinds):
            absent = sorted(set(kinds) - set(recording.sources()))
            raise ValueError(f"{recording.video.parent}: has no {', '.join(absent)} while other recordings do; a "
                             "dataset's samples have the same modalities (prepare it as another --dataset)")
    folders = [_FOLDERS[kind] for kind in kinds]
    summary = PrepareSummary(Path(root), check_name(dataset, "--dataset"), folders)
    write = begin_write(root, dataset, folders, mode="overwrite" if overwrite else "append" if append else "new",
                        keep_staged=True, own_files=[MANIFEST_NAME])
    staged = {folder: write.staging(folder) for folder in folders}
    manifest_path = staged[folders[0]] / MANIFEST_NAME
    identity = _identity(tokenizers, samples_per_shard, write.first_index)
    fingerprints = [_fingerprint(recording) for recording in recordings]
    existing_keys = write.existing_keys() if append else {}
    done = _finished_recordings(manifest_path, identity, fingerprints, staged) if video_tokenizer.digest else []
    if not done:  # nothing to resume: start the staged folders over
        write.abort()
    summary.first_shard = write.first_index
    next_index = write.first_index + sum(len(entry["shards"]) for entry in done)
    summary.recordings_kept = len(done)
    for entry in done:
        summary.samples += entry["samples"]
        summary.skipped.update(entry["skipped"])
    if done and on_resume is not None:
        on_resume(len(done))
    for directory in staged.values():
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.iterdir():  # what the interrupted run wrote after the recordings it finished
            match = SHARD_NAME.match(stale.name)
            if match is None and stale.name != MANIFEST_NAME or match is not None and int(match[1]) >= next_index:
                stale.unlink()
    bar = progress_bar(recordings, desc="preparing", unit="recording", enabled=None if progress else False)
    with bar:
        for number, recording in enumerate(bar):
            if number < len(done):
                continue
            keys, tokens, skipped = _aligned_samples(tokenizers, recording)
            repeated = next((key for key in keys if key in existing_keys), None)
            if repeated is not None:
                raise ValueError(f"--append: sample key {repeated!r} is already in {existing_keys[repeated]} (was "
                                 f"{recording.name} prepared into this dataset before?)")
            shards = []
            for lo in range(0, len(keys), samples_per_shard):
                shard_keys = keys[lo:lo + samples_per_shard]
                for kind, folder in zip(kinds, folders):
                    write_tar(staged[folder] / shard_name(next_index),
                              [(f"{key}.npz", encode_tokens(row)) for key, row in
                               zip(shard_keys, tokens[kind][lo:lo + samples_per_shard])])
                shards.append([next_index, shard_keys])
                next_index += 1
            for directory in staged.values():
                fsync_dir(directory)
            done.append({"source": fingerprints[number], "shards": shards, "samples": len(keys),
                         "skipped": dict(skipped)})
            summary.samples += len(keys)
            summary.skipped.update(skipped)
            write_manifest(manifest_path, {"identity": identity, "recordings": done, "complete": False})
            bar.set_postfix(samples=summary.samples)
    summary.recordings_done = len(done)
    summary.shards = next_index - write.first_index
    if not summary.shards:
        write.abort()
        return summary
    write_manifest(manifest_path, {"identity": identity, "recordings": done, "complete": True,
                                    "pattern": summary.pattern(), "skipped": dict(summary.skipped),
                                    **({"earlier_runs": earlier_runs(write.target(folders[0]) / MANIFEST_NAME)} if append else {})})
    write.commit()
    return summary
