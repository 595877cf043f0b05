"""Every setting the gateway reads, typed, from the environment (documented in README)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# API Gateway ends every integration at 29 s; a deadline past it would only waste Triton's time.
API_GATEWAY_LIMIT_SECONDS = 29.0

# How image pixels are scaled before a model sees them (the names of Triton's image_client).
ImageScaling = Literal["NONE", "INCEPTION", "VGG"]


class Settings(BaseSettings):
    """Gateway configuration; each field is read from the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    triton_grpc_url: str = Field("127.0.0.1:8001", description="host:port of Triton's gRPC endpoint")
    triton_grpc_tls: bool = Field(False, description="talk TLS to Triton (Triton runs with --grpc-use-ssl)")
    triton_grpc_tls_ca: str = Field(
        "", description="PEM text, or a path to a PEM file, of the CA Triton's certificate is checked against"
    )
    triton_grpc_tls_server_name: str = Field(
        "", description="name Triton's certificate is checked against; empty: the host of TRITON_GRPC_URL"
    )
    default_model: str = Field("densenet_onnx", description="model used when a request names none")
    allowed_models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated allow-list of model names; empty serves every model Triton has"
    )
    triton_timeout_seconds: float = Field(
        10.0, gt=0, lt=API_GATEWAY_LIMIT_SECONDS, description="deadline of one request's Triton calls"
    )
    health_timeout_seconds: float = Field(2.0, gt=0, description="deadline of the /health probe")
    health_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="how long /health reuses Triton's answer, so a flood of probes costs Triton nothing",
    )
    metadata_ttl_seconds: float = Field(60.0, ge=0, description="how long model metadata stays cached")
    idle_reconnect_seconds: float = Field(
        30.0,
        ge=0,
        description="a channel idle this long gets one retry on a fresh channel when a call is UNAVAILABLE",
    )
    channel_max_age_seconds: float = Field(
        60.0,
        ge=0,
        description="re-open the pooled gRPC channel after this age, so Tritons that joined the NLB get "
        "calls; 0 keeps it for the life of the process",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="largest request body accepted; under Lambda the 6 MB invoke payload, with the body in "
        "base64, caps it at about 4.4 MB whatever this says (API Gateway's own cap is 10 MB)",
    )
    api_root_path: str = Field(
        "",
        description="base path of a custom domain mapping, e.g. /v1; the execute-api stage is found alone",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="gateway log level")
    max_inflated_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="largest v2 request body accepted after undoing its Content-Encoding (gzip, deflate)",
    )
    max_elements: int = Field(
        0,
        ge=0,
        description="most JSON tensor elements one request may carry; 0: MAX_INFLATED_BYTES / 16",
    )
    max_images: int = Field(16, gt=0, description="most images one /infer request may carry")
    max_image_pixels: int = Field(
        40_000_000,
        gt=0,
        description="largest image (width x height) decoded; larger ones are refused from their header",
    )
    image_scaling: Annotated[dict[str, ImageScaling], NoDecode] = Field(
        {},
        description="model=SCALING,... (NONE, INCEPTION, VGG): overrides a model config's image_scaling",
    )

    stream_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="longest wait for a generation's next response before the stream ends (504)"
    )
    stream_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="longest a generation may run in all; separate from TRITON_TIMEOUT_SECONDS (a regional "
        "API Gateway streams up to 15 minutes)",
    )
    max_streams: int = Field(
        64, gt=0, description="generations one gateway process runs at once; past it: 503 with Retry-After"
    )
    max_tokens_limit: int = Field(
        4096, gt=0, description="largest max_tokens a /v1 request may ask for (also the chat default)"
    )
    max_prompt_bytes: int = Field(
        256 * 1024, gt=0, description="largest prompt (UTF-8 bytes, all text inputs of a generation) accepted"
    )
    chat_template_dir: str = Field(
        "",
        description="directory laid out like a model repository: <dir>/<model>/tokenizer_config.json's "
        "chat_template renders /v1/chat/completions prompts (a model config parameter chat_template wins)",
    )

    powertools_service_name: str = Field(
        "triton-gateway", description="the service dimension of every metric and the access record's service"
    )
    powertools_metrics_namespace: str = Field("TritonGateway", description="CloudWatch namespace of metrics")
    powertools_metrics_disabled: bool = Field(False, description="write no EMF metric lines")

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("image_scaling", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, scaling = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected model=SCALING, got {item!r}")
            pairs[name.strip()] = scaling.strip().upper()
        return pairs

    @field_validator("triton_grpc_tls_ca")
    @classmethod
    def _read_ca(cls, value: str) -> str:
        # Read once, here: a wrong path fails the cold start with this message, not every request later.
        value = value.strip()
        if not value or value.startswith("-----BEGIN"):
            return value
        try:
            with open(value, encoding="ascii") as pem:
                text = pem.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"neither PEM text nor a readable PEM file ({exc.__class__.__name__})") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(f"{value} holds no PEM certificate")
        return text

    @field_validator("api_root_path")
    @classmethod
    def _normalise_root(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        return f"/{value.lstrip('/')}" if value else ""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def element_limit(self) -> int:
        """MAX_ELEMENTS, or by default one element per 16 bytes of MAX_INFLATED_BYTES: 1 Mi at 16 MiB, ~80 MB
        once parsed as JSON numbers (~77 bytes each), a tenth of a 1 GB Lambda."""
        return self.max_elements or self.max_inflated_bytes // 16

    def model_allowed(self, name: str) -> bool:
        """True when the allow-list is empty or names the model."""
        return not self.allowed_models or name in self.allowed_models


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
