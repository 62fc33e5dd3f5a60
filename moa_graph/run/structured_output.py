"""A structured answer validated against its schema, whatever kind of schema it is.

LangChain's ``with_structured_output`` validates an answer only when the schema is
a pydantic model; for a TypedDict or a JSON schema it returns whatever object the
model wrote (``{'age': 'very old'}``, ``{}``). :func:`validator` closes that gap for
:class:`~moa_graph.run.chat_model.ChatMoA`:

- a pydantic model: LangChain's parser has already made a validated instance;
- a TypedDict: pydantic's ``TypeAdapter`` (values are converted as for a model's
  fields). A ``typing.TypedDict`` on Python 3.11, which pydantic refuses, is checked
  against the JSON schema the aggregator was given instead;
- a JSON schema (or an OpenAI or Anthropic tool schema): ``jsonschema``, against the
  schema the aggregator was given as the tool's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, PydanticUserError, TypeAdapter
from typing_extensions import is_typeddict

Validator = Callable[[Any], Any]
"""Returns a parsed answer validated (converted where the schema says), or raises
``pydantic.ValidationError`` or :class:`InvalidAnswer`."""


class InvalidAnswer(ValueError):
    """An answer that does not fit its JSON schema; the message says where and why."""


def validator(schema: dict[str, Any] | type) -> Validator:
    """Return what validates a parsed answer against ``schema``.

    Raises:
        ValueError: ``schema`` is a JSON schema that is itself invalid.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return _as_is
    if is_typeddict(schema):
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(schema)  # type: ignore[arg-type]
        except PydanticUserError:  # typing.TypedDict on Python < 3.12
            return _json_schema_validator(schema)
        return adapter.validate_python
    if isinstance(schema, dict):
        return _json_schema_validator(schema)
    return _as_is


def _as_is(value: Any) -> Any:
    return value


def _json_schema_validator(schema: dict[str, Any] | type) -> Validator:
    """Return a validator by the JSON schema of the tool the aggregator is given."""
    import jsonschema  # 0.14 s to import (python -X importtime): only when needed

    parameters = convert_to_openai_tool(schema)["function"].get("parameters") or {}
    checker_class = jsonschema.validators.validator_for(parameters)
    try:
        checker_class.check_schema(parameters)
    except jsonschema.SchemaError as error:
        raise ValueError(f"the JSON schema is not valid: {error.message}") from None
    checker = checker_class(parameters)

    def validate(value: Any) -> Any:
        error = jsonschema.exceptions.best_match(checker.iter_errors(value))
        if error is None:
            return value
        where = ".".join(str(part) for part in error.absolute_path)
        raise InvalidAnswer(f"{where}: {error.message}" if where else error.message)

    return validate
