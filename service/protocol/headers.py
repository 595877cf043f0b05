"""The HTTP names the wire formats use (headers, media types), apart so that routes declare them without
importing the codecs (numpy) at a cold start."""

# The v2 binary tensor extension: the JSON header's length, and the body's media type.
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
# Image bodies /infer reads.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
