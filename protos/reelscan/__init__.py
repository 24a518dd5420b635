"""reelscan: scan directories of video files into a media library over gRPC."""
