"""Files steering reads and writes beyond its own artifacts: llama.cpp control-vector GGUF files
(`SteeringVector.to_gguf` / `from_gguf` use these), and file:line positions of JSONL records."""
from metalens.steering.io.gguf import read_gguf, write_gguf
from metalens.steering.io.records import record_lines

__all__ = ["read_gguf", "record_lines", "write_gguf"]
