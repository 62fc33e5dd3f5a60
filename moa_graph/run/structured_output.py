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

:func:`validated_output` puts the validator after what parses the answer: an answer
that does not validate is asked for again, or (``include_raw``) reported as LangChain
reports one it cannot parse. :func:`json_schema_output` asks for the schema as the
aggregator's ``response_format`` instead of as a tool.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, PydanticUserError, TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from moa_graph.config.model import describe_validation_error
from moa_graph.errors import StructuredOutputError

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


def validated_output(
    parsed: Runnable[LanguageModelInput, Any],
    schema: dict[str, Any] | type,
    validate: Validator,
    *,
    include_raw: bool,
    attempts: int,
) -> Runnable[LanguageModelInput, Any]:
    """Return ``parsed`` (what parses the answer) followed by ``validate`` (``schema``'s).

    Without ``include_raw``, an answer that does not validate (or called no tool)
    is asked for again, up to ``attempts`` runs, then fails with one
    :class:`~moa_graph.errors.StructuredOutputError`.
    """
    if include_raw:
        checked: Runnable[Any, Any] = RunnableLambda(_with_validated(validate))
        return parsed | checked
    return _retried(
        parsed | RunnableLambda(_present) | RunnableLambda(validate), _schema_name(schema), attempts
    )


def json_schema_output(
    model: BaseChatModel, schema: dict[str, Any] | type, *, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """Return ``model`` asked for ``schema`` as its ``response_format``, then parsed."""
    json_schema = convert_to_json_schema(schema)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", _schema_name(schema))[:64] or "answer"
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": json_schema},
    }
    bound = model.bind(response_format=response_format)
    parser: Runnable[Any, Any] = (
        PydanticOutputParser(pydantic_object=schema)
        if isinstance(schema, type) and is_basemodel_subclass(schema)
        else JsonOutputParser()
    )
    if not include_raw:
        return bound | parser
    parsing = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    ).with_fallbacks(
        [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
    )
    return RunnableMap(raw=bound) | parsing


def _schema_name(schema: dict[str, Any] | type) -> str:
    if isinstance(schema, dict):
        return str(schema.get("title") or schema.get("name") or "the schema")
    return schema.__name__


def _present(value: Any) -> Any:
    """Refuse an answer that called no tool (LangChain's parser gives None for it)."""
    if value is None:
        raise OutputParserException("the aggregator answered in text, not with the schema")
    return value


def _with_validated(
    validate: Validator,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Return what validates the ``parsed`` of an ``include_raw`` result.

    An answer that does not validate is reported as LangChain reports one it cannot
    parse: ``parsed`` None and the error in ``parsing_error``.
    """

    def check(result: dict[str, Any]) -> dict[str, Any]:
        if result.get("parsing_error") is not None or result.get("parsed") is None:
            return result
        try:
            return {**result, "parsed": validate(result["parsed"])}
        except (InvalidAnswer, ValidationError) as error:
            return {**result, "parsed": None, "parsing_error": error}

    return check


def _retried(parsed: Runnable[Any, Any], name: str, attempts: int) -> Runnable[Any, Any]:
    """Return ``parsed`` retried on invalid answers, failing with one clear error."""
    failures = (OutputParserException, ValidationError, InvalidAnswer)
    retrying = parsed.with_retry(
        retry_if_exception_type=failures,
        stop_after_attempt=attempts,
        wait_exponential_jitter=False,
    )

    def failed(error: Exception) -> StructuredOutputError:
        if isinstance(error, ValidationError):
            reason = describe_validation_error(error)[:300]
        else:
            reason = " ".join(str(error).split())[:300]
        return StructuredOutputError(
            f"the MoA's answer did not validate as {name} after {attempts} attempts: {reason}"
        )

    def run(value: Any, config: RunnableConfig) -> Any:
        try:
            return retrying.invoke(value, config)
        except failures as error:
            raise failed(error) from None

    async def arun(value: Any, config: RunnableConfig) -> Any:
        try:
            return await retrying.ainvoke(value, config)
        except failures as error:
            raise failed(error) from None

    return RunnableLambda(run, arun, name=f"structured {name}")
