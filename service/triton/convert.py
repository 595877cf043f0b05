"""Triton's protobuf answers in the forms the gateway speaks: v2 JSON, and what it keeps of a model."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.triton.protos import model_config_pb2, service_pb2

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def model_info(
    metadata: service_pb2.ModelMetadataResponse, config: model_config_pb2.ModelConfig
) -> ModelInfo:
    return ModelInfo(
        metadata=ModelMetadata(
            name=metadata.name,
            versions=list(metadata.versions),
            platform=metadata.platform,
            inputs=[_tensor_metadata(t) for t in metadata.inputs],
            outputs=[_tensor_metadata(t) for t in metadata.outputs],
        ),
        max_batch_size=config.max_batch_size,
        optional_inputs=frozenset(i.name for i in config.input if i.optional),
        input_formats={i.name: model_config_pb2.ModelInput.Format.Name(i.format) for i in config.input},
        parameters={key: value.string_value for key, value in config.parameters.items()},
        labelled_outputs=frozenset(o.name for o in config.output if o.label_filename),
        config=message_to_json(config),
    )


def _tensor_metadata(tensor: service_pb2.ModelMetadataResponse.TensorMetadata) -> TensorMetadata:
    return TensorMetadata(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))


def message_to_json(message: Message) -> dict[str, Any]:
    """A protobuf message as Triton's HTTP API writes it: every field, and 64-bit integers as numbers."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    descriptor: Descriptor = message.DESCRIPTOR  # type: ignore[assignment]  # upb twin of the same type
    return _int64_as_numbers(data, descriptor)


def _int64_as_numbers(data: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    # proto3's JSON mapping writes int64 as strings; v2 clients expect numbers (e.g. max_batch_size, dims).
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            continue
        if field.type in _INT64_TYPES:
            data[key] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.message_type is not None:
            entry = field.message_type
            if entry.GetOptions().map_entry:
                value_field = entry.fields_by_name["value"]
                if value_field.message_type is not None:
                    for item in value.values():
                        _int64_as_numbers(item, value_field.message_type)
                elif value_field.type in _INT64_TYPES:
                    data[key] = {k: int(v) for k, v in value.items()}
            else:
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, dict):
                        _int64_as_numbers(item, entry)
    return data
