"""Real files for the metadata of issue 16, one per feature, with what each was made with (see tests/media.py).

Made with PyAV where it can write the feature, with the ffmpeg CLI where it cannot (interlacing, cover art: those
files are left out, and the tests that need them skip, when ffmpeg is absent), and with boxes added to an MP4 for
HDR10 mastering metadata and Dolby Vision, which neither writes from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from tests.media import (
    FFMPEG,
    Track,
    add_cover_art,
    add_sample_entry_boxes,
    clli_box,
    dvcc_box,
    make_clip,
    make_interlaced,
    make_truncated,
    make_zero_byte,
    mdcv_box,
)

# BT.2020 primaries and D65 white in the mdcv box's 0.00002 units; luminance in 0.0001 cd/m².
BT2020 = ((35400, 14600), (8500, 39850), (6550, 2300))
D65 = (15635, 16450)


@dataclass(frozen=True)
class MetadataCorpus:
    directory: Path
    files: dict[str, Path]
    broken: dict[str, Path] = field(default_factory=dict)

    @property
    def has_ffmpeg(self) -> bool:
        return FFMPEG is not None


def build_metadata_corpus(directory: Path) -> MetadataCorpus:
    files: dict[str, Path] = {}
    files["surround"] = make_clip(
        directory / "surround.mkv",
        audio_codec="ac3",
        audio_layout="5.1(side)",
        audio_track=Track("eng", "Director's commentary", ("comment",)),
        subtitle_tracks=[
            Track("eng", "English (forced)", ("forced",)),
            Track("fra", "Français SDH", ("default", "hearing_impaired")),
        ],
        title="My Film",
        chapters=[(0.0, 0.5, "Intro"), (0.5, 1.0, "Main")],
    ).path
    files["anamorphic"] = make_clip(
        directory / "anamorphic.mp4", width=72, height=48, sar=Fraction(32, 27), audio_language="deu"
    ).path
    hdr10 = make_clip(
        directory / "hdr10.mp4",
        width=96,
        pix_fmt="yuv420p10le",
        color_transfer="smpte2084",
        color_primaries="bt2020",
        audio_codec=None,
    ).path
    files["hdr10"] = add_sample_entry_boxes(hdr10, mdcv_box(BT2020, D65, 10_000_000, 50) + clli_box(1000, 400))
    files["hlg"] = make_clip(
        directory / "hlg.mkv", pix_fmt="yuv420p10le", color_transfer="arib-std-b67", color_primaries="bt2020"
    ).path
    dv = make_clip(
        directory / "dolby_vision.mp4",
        pix_fmt="yuv420p10le",
        color_transfer="smpte2084",
        color_primaries="bt2020",
        audio_codec=None,
    ).path
    files["dolby_vision"] = add_sample_entry_boxes(dv, dvcc_box(8, 6))
    files["rotated"] = make_clip(directory / "phone.mp4", rotation=90, audio_language="eng").path
    # ffprobe prints VP8's profile as "0" (a codec without profile names), PyAV as none: both must store "".
    files["vp8"] = make_clip(directory / "vp8.webm", video_codec="vp8", audio_codec="opus").path
    # A camcorder's upper-case extension, found by the default extensions (as MPEG-TS, which it is).
    files["camcorder"] = make_clip(directory / "CAMCORDER" / "00001.MTS", audio_codec="aac").path
    if FFMPEG is not None:
        files["interlaced"] = make_interlaced(directory / "interlaced.mkv", "tt")
        files["cover_art"] = add_cover_art(files["rotated"], directory / "with cover.mp4")
    broken = {
        "empty": make_zero_byte(directory / "broken" / "empty.mp4"),
        # moov comes last in PyAV's MP4s: a download cut short has none.
        "no_moov": make_truncated(directory / "broken" / "partial download.mp4", files["rotated"], keep=0.5),
        # Opens fine, holds only a subtitle stream.
        "no_media": make_clip(
            directory / "broken" / "subtitles only.mkv", video_codec=None, audio_codec=None, subtitle_languages=["eng"]
        ).path,
    }
    return MetadataCorpus(directory, files, broken)
