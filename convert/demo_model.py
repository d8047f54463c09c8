"""Build ``models/devine-demo-synthetic.onnx``: DEVINE's architecture with synthetic weights.

``python -m convert.demo_model [OUT]`` writes a seeded official-layout folder with
:func:`convert.fixture.write_official_folder` and converts it like the official weights, with
the model marked as synthetic. Its outputs show the pipeline working; they are NOT physical.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

DEMO_SEED = 2023
DEMO_NAME = "devine-demo-synthetic.onnx"


def build_demo_model(output: str | Path) -> Path:
    from .export import convert_model
    from .fixture import write_official_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_official_folder(Path(tmp) / "synthetic_model_UNet", seed=DEMO_SEED)
        report = convert_model(folder, output, synthetic=True)
    return report.output


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("models") / DEMO_NAME
    print(f"wrote {build_demo_model(out)}")
