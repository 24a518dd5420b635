"""A stream's coded side data (display matrix, HDR mastering display, content light level, Dolby Vision
configuration), read from FFmpeg's AVCodecParameters of a PyAV stream without dumping the format.

Why this route: FFmpeg keeps this side data in `AVStream.codecpar->coded_side_data` (FFmpeg >= 6.1; before, in the
removed `AVStream.side_data`). PyAV 18 exposes none of it: it dropped `Stream.side_data` (PyAV PR #1570) and offers
rotation only on decoded frames (`VideoFrame.rotation`, which costs a decode). The alternatives were parsing
`Container.dumps_format()` text (half the per-file probe cost, and only rotation), decoding a frame (far dearer),
or reading the MP4/MKV boxes ourselves (a second parser of every container). This module instead reads the side
data through FFmpeg's own public API, `av_packet_side_data_get()` and `av_display_rotation_get()`, called with
ctypes in the very libraries PyAV loaded, so the values are FFmpeg's (what ffprobe prints). It costs a few
microseconds per stream.

What is fragile, and how it is contained: the AVStream pointer sits inside PyAV's Cython Stream object (its first
C field, after the object header and the vtable pointer: av/stream.pxd), and the AVStream/AVCodecParameters field
offsets are FFmpeg's public ABI, fixed within a major version. So the reader is enabled only for the library majors
it was checked against, and every stream is verified before any pointer is followed further: the AVStream's index
and the codec parameters' type, width and height must equal what PyAV itself reports. When anything does not
match, `read()` returns None and the caller falls back to the slow, safe `dumps_format()` parse.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from reelscan.service.scan.media_info import MasteringDisplay

log = logging.getLogger(__name__)

# libavformat/libavcodec majors whose AVStream/AVCodecParameters layout matches the offsets below (FFmpeg 7, 8).
_KNOWN_MAJORS = {"libavformat": (61, 62), "libavcodec": (61, 62)}
# PyAV Stream object: PyObject_HEAD (16 bytes), the Cython vtable pointer (8), then `AVStream *ptr`.
_STREAM_PTR_OFFSET = 24
# AVStream: av_class (8), index (int), id (int), codecpar (pointer).
_AVSTREAM_INDEX = 8
_AVSTREAM_CODECPAR = 16
# AVCodecParameters: codec_type, codec_id, codec_tag (ints), extradata (pointer), extradata_size (int, padded),
# coded_side_data (pointer), nb_coded_side_data (int), ..., width, height at 72 and 76.
_PAR_CODEC_TYPE = 0
_PAR_SIDE_DATA = 32
_PAR_NB_SIDE_DATA = 40
_PAR_WIDTH = 72
_PAR_HEIGHT = 76
_AVMEDIA_TYPE = {"video": 0, "audio": 1, "subtitle": 3}


class _Rational(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("den", ctypes.c_int)]


class _PacketSideData(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t), ("type", ctypes.c_int)]


class _MasteringDisplay(ctypes.Structure):  # AVMasteringDisplayMetadata (libavutil/mastering_display_metadata.h)
    _fields_ = [
        ("display_primaries", (_Rational * 2) * 3),  # r, g, b; each x, y
        ("white_point", _Rational * 2),
        ("min_luminance", _Rational),
        ("max_luminance", _Rational),
        ("has_primaries", ctypes.c_int),
        ("has_luminance", ctypes.c_int),
    ]


class _ContentLight(ctypes.Structure):  # AVContentLightMetadata
    _fields_ = [("max_cll", ctypes.c_uint), ("max_fall", ctypes.c_uint)]


class _DoviConfig(ctypes.Structure):  # AVDOVIDecoderConfigurationRecord (its leading fields)
    _fields_ = [
        ("dv_version_major", ctypes.c_uint8),
        ("dv_version_minor", ctypes.c_uint8),
        ("dv_profile", ctypes.c_uint8),
        ("dv_level", ctypes.c_uint8),
    ]


@dataclass(frozen=True, slots=True)
class SideData:
    rotation_ccw: float | None  # av_display_rotation_get(), counter-clockwise degrees; None without a matrix
    mastering: MasteringDisplay | None
    max_cll: int | None
    max_fall: int | None
    dovi_profile: int | None


NO_SIDE_DATA = SideData(None, None, None, None, None)


@dataclass(frozen=True)
class _Api:
    side_data_get: Any
    rotation_get: Any
    types: dict[str, int]


def _ratio(r: _Rational) -> float:
    return float(Fraction(r.num, r.den)) if r.den else 0.0


@functools.cache
def _api() -> _Api | None:
    """FFmpeg's functions from the libraries PyAV itself loaded, or None where the layout is not one we know."""
    versions = av.library_versions
    for lib, majors in _KNOWN_MAJORS.items():
        if versions.get(lib, (0,))[0] not in majors:
            log.info("coded side data: %s %s not verified; rotation falls back to the format dump", lib, versions)
            return None
    try:
        from av import packet as av_packet

        types = {
            name: int(av_packet.packet_sidedata_type_from_literal(name))
            for name in ("display_matrix", "mastering_display_metadata", "content_light_level", "dovi_conf")
        }
        codec = _load("libavcodec")
        util = _load("libavutil")
        side_data_get = codec.av_packet_side_data_get
        side_data_get.restype = ctypes.POINTER(_PacketSideData)
        side_data_get.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        rotation_get = util.av_display_rotation_get
        rotation_get.restype = ctypes.c_double
        rotation_get.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError, ImportError, ValueError) as error:
        log.info("coded side data unavailable (%s); rotation falls back to the format dump", error)
        return None
    return _Api(side_data_get, rotation_get, types)


def _load(name: str) -> ctypes.CDLL:
    """The shared library PyAV is linked against: its wheel bundles FFmpeg in av.libs/ (already loaded, so this
    is the same copy); a PyAV built against the system's FFmpeg finds it by soname."""
    here = os.path.dirname(os.path.dirname(av.__file__))
    bundled = sorted(glob.glob(os.path.join(here, "av.libs", f"{name}-*.so*")))
    if bundled:
        return ctypes.CDLL(bundled[0])
    major = av.library_versions[name][0]
    return ctypes.CDLL(f"{name}.so.{major}")


def read(stream: Any) -> SideData | None:
    """The coded side data of a PyAV input stream; None when it cannot be read safely (then use another way)."""
    api = _api()
    if api is None:
        return None
    try:
        avstream = ctypes.c_void_p.from_address(id(stream) + _STREAM_PTR_OFFSET).value
        if not avstream or ctypes.c_int.from_address(avstream + _AVSTREAM_INDEX).value != stream.index:
            return None
        par = ctypes.c_void_p.from_address(avstream + _AVSTREAM_CODECPAR).value
        if not par or ctypes.c_int.from_address(par + _PAR_CODEC_TYPE).value != _AVMEDIA_TYPE.get(stream.type, -1):
            return None
        if stream.type == "video":
            cc = stream.codec_context
            width = ctypes.c_int.from_address(par + _PAR_WIDTH).value
            height = ctypes.c_int.from_address(par + _PAR_HEIGHT).value
            if (width, height) != (int(cc.width or 0), int(cc.height or 0)):
                return None
        items = ctypes.c_void_p.from_address(par + _PAR_SIDE_DATA).value
        count = ctypes.c_int.from_address(par + _PAR_NB_SIDE_DATA).value
    except (ValueError, AttributeError):
        return None
    if not 0 <= count <= 1024:
        return None
    if not items or not count:
        return NO_SIDE_DATA  # most streams: nothing more to read

    def get(kind: str, struct: type[ctypes.Structure]) -> Any:
        if not items or not count:
            return None
        found = api.side_data_get(items, count, api.types[kind])
        if not found or not found.contents.data or found.contents.size < ctypes.sizeof(struct):
            return None
        return struct.from_address(found.contents.data)

    rotation = None
    if items and count:
        matrix = api.side_data_get(items, count, api.types["display_matrix"])
        if matrix and matrix.contents.data and matrix.contents.size >= 36:
            rotation = float(api.rotation_get(matrix.contents.data))
    mdm = get("mastering_display_metadata", _MasteringDisplay)
    mastering = None
    if mdm is not None and (mdm.has_primaries or mdm.has_luminance):
        p, w = mdm.display_primaries, mdm.white_point
        xy = [_ratio(r) for r in (p[0][0], p[0][1], p[1][0], p[1][1], p[2][0], p[2][1], w[0], w[1])]
        if not mdm.has_primaries:
            xy = [0.0] * 8
        lum = (_ratio(mdm.min_luminance), _ratio(mdm.max_luminance)) if mdm.has_luminance else (0.0, 0.0)
        mastering = MasteringDisplay(xy[0], xy[1], xy[2], xy[3], xy[4], xy[5], xy[6], xy[7], lum[0], lum[1])
    light = get("content_light_level", _ContentLight)
    dovi = get("dovi_conf", _DoviConfig)
    return SideData(
        rotation_ccw=rotation,
        mastering=mastering,
        max_cll=None if light is None else int(light.max_cll),
        max_fall=None if light is None else int(light.max_fall),
        dovi_profile=None if dovi is None else int(dovi.dv_profile),
    )
