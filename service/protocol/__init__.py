"""Wire types and tensor codecs: no FastAPI, no gRPC."""
