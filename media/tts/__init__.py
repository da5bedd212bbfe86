"""Text to speech for prompts: Japanese with pyopenjtalk, other languages with espeak-ng.

Prompts are rendered to 8 kHz mono 16-bit WAV and cached on disk under a file name that hashes
the engine, voice, rate and text, so each distinct prompt is synthesised once. `render()` runs the
engines off the event loop (a thread for pyopenjtalk, a subprocess for espeak-ng).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.audio import Audio, float_to_int16, parse_wav, resample, wav_bytes

__all__ = ["TtsEngineMissing", "TtsError", "TtsRenderer", "default_cache_dir", "engine_for", "tts_main"]

OPENJTALK = "openjtalk"
ESPEAK = "espeak-ng"


class TtsError(RuntimeError):
    """Rendering failed."""


class TtsEngineMissing(TtsError):
    """The engine for the language is not installed."""


def default_cache_dir() -> Path:
    """$SOFTSWITCH_TTS_CACHE, else $XDG_CACHE_HOME/softswitch/tts, else ~/.cache/softswitch/tts."""
    env = os.environ.get("SOFTSWITCH_TTS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "softswitch" / "tts"


def engine_for(lang: str) -> str:
    """Japanese goes to Open JTalk, everything else to espeak-ng."""
    return OPENJTALK if lang.lower().split("-")[0] in ("ja", "jp", "jpn") else ESPEAK


def _fit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Scale float audio (in [-1, 1] units) so peaks do not clip, leaving quiet audio alone."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x * (0.9 / peak) if peak > 0.98 else x


@dataclass(frozen=True, slots=True)
class _Job:
    engine: str
    voice: str
    text: str
    rate: int

    def key(self) -> str:
        h = hashlib.sha256(f"{self.engine}\0{self.voice}\0{self.rate}\0{self.text}".encode()).hexdigest()
        return f"{self.engine}-{h[:40]}.wav"


class TtsRenderer:
    """Renders and caches prompts. One instance per node; safe to share between tasks."""

    def __init__(self, cache_dir: str | Path | None = None, *, rate: int = 8000) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.rate = rate
        self.hits = 0
        self.misses = 0
        # Open JTalk keeps one global dictionary instance: serialise calls into it
        self._jtalk_lock = threading.Lock()
        self._inflight: dict[Path, asyncio.Future[Path]] = {}

    def _job(self, text: str, lang: str, voice: str, rate: int | None) -> _Job:
        if not text.strip():
            raise TtsError("nothing to say: empty text")
        engine = engine_for(lang)
        if engine == ESPEAK and not voice:
            voice = lang
        return _Job(engine, voice, text, rate or self.rate)

    def cached_path(self, text: str, *, lang: str = "ja", voice: str = "", rate: int | None = None) -> Path:
        """Where the prompt is (or will be) cached."""
        return self.cache_dir / self._job(text, lang, voice, rate).key()

    # -- synchronous rendering (threads and the CLI) ------------------------------------------

    def _openjtalk(self, job: _Job) -> Audio:
        try:
            import pyopenjtalk
        except ImportError as e:
            raise TtsEngineMissing("pyopenjtalk is not installed (pip install pyopenjtalk-plus)") from e
        with self._jtalk_lock:
            kwargs = {}
            if job.voice:
                try:
                    kwargs["speed"] = float(job.voice)  # the only knob of the bundled voice
                except ValueError:
                    raise TtsError(
                        f"openjtalk voice must be a speed factor like 1.2, got {job.voice!r}"
                    ) from None
            x, sr = pyopenjtalk.tts(job.text, **kwargs)
        # pyopenjtalk returns float64 in int16 units
        return Audio(np.asarray(x, dtype=np.float64).reshape(-1, 1) / 32768.0, int(sr))

    def _espeak_cmd(self, job: _Job, out: Path) -> list[str]:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise TtsEngineMissing("espeak-ng is not installed (apt-get install espeak-ng)")
        # the text goes on stdin so a prompt starting with "-" is never read as an option
        return [exe, "-v", job.voice, "-w", str(out), "--stdin"]

    def _finish(self, job: _Job, audio: Audio, dest: Path) -> Path:
        mono = audio.samples.mean(axis=1)
        pcm = float_to_int16(_fit(resample(mono, audio.rate, job.rate)))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(wav_bytes(pcm, job.rate))
        tmp.replace(dest)  # atomic: a concurrent reader sees the old file or the whole new one
        return dest

    def render_sync(self, text: str, *, lang: str = "ja", voice: str = "", rate: int | None = None) -> Path:
        """Render (or find in the cache) and return the cached WAV path. Blocking."""
        job = self._job(text, lang, voice, rate)
        dest = self.cache_dir / job.key()
        if dest.exists():
            self.hits += 1
            return dest
        self.misses += 1
        if job.engine == OPENJTALK:
            audio = self._openjtalk(job)
        else:
            raw = dest.with_name(f".{dest.name}.{os.getpid()}.raw.wav")
            dest.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                self._espeak_cmd(job, raw), input=text.encode(), capture_output=True, timeout=60, check=False
            )
            if proc.returncode != 0 or not raw.exists():
                raise TtsError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
            try:
                audio = parse_wav(raw.read_bytes())
            finally:
                raw.unlink(missing_ok=True)
        return self._finish(job, audio, dest)

    # -- asynchronous rendering (the node) -----------------------------------------------------

    async def render(self, text: str, *, lang: str = "ja", voice: str = "", rate: int | None = None) -> Path:
        """Render off the event loop; concurrent requests for the same prompt share one rendering."""
        job = self._job(text, lang, voice, rate)
        dest = self.cache_dir / job.key()
        if await asyncio.to_thread(dest.exists):
            self.hits += 1
            return dest
        pending = self._inflight.get(dest)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[dest] = fut
        try:
            self.misses += 1
            if job.engine == OPENJTALK:
                audio = await asyncio.to_thread(self._openjtalk, job)
            else:
                audio = await self._espeak_async(job, dest)
            path = await asyncio.to_thread(self._finish, job, audio, dest)
            fut.set_result(path)
            return path
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[dest]

    async def _espeak_async(self, job: _Job, dest: Path) -> Audio:
        raw = dest.with_name(f".{dest.name}.{os.getpid()}.{id(job)}.raw.wav")
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            *self._espeak_cmd(job, raw),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(job.text.encode()), 60)
        if proc.returncode != 0:
            raise TtsError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        try:
            return parse_wav(await asyncio.to_thread(raw.read_bytes))
        finally:
            await asyncio.to_thread(raw.unlink, True)


def tts_main(text: str, output: str, *, lang: str = "ja", voice: str = "", rate: int = 8000) -> int:
    """`softswitch tts TEXT -o FILE`: render a prompt to a WAV file. Exit codes: 0 ok, 2 error."""
    if not 8000 <= rate <= 48000:
        print(f"softswitch tts: --rate must be between 8000 and 48000, got {rate}", file=sys.stderr)
        return 2
    out = Path(output)
    try:
        renderer = TtsRenderer(rate=rate)
        try:
            cached = renderer.render_sync(text, lang=lang, voice=voice)
        except OSError:
            # an unwritable cache must not stop a one-off rendering: use a private temporary cache
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                cached = TtsRenderer(tmp, rate=rate).render_sync(text, lang=lang, voice=voice)
                data = cached.read_bytes()
        else:
            data = cached.read_bytes()
    except TtsError as e:
        print(f"softswitch tts: {e}", file=sys.stderr)
        return 2
    try:
        out.write_bytes(data)
    except OSError as e:
        print(f"softswitch tts: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(
        f"{out}: {(len(data) - 44) / 2 / rate:.2f} s at {rate} Hz ({ESPEAK if engine_for(lang) == ESPEAK else OPENJTALK})"
    )
    return 0
