"""The Python API loads the backend without TensorFlow's native start-up notices."""

import subprocess
import sys


def test_the_first_model_name_loads_keras_without_native_notices(tmp_path):
    code = "import keras_covidcxr\nkeras_covidcxr.Pipeline\nimport sys\nprint('keras' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert done.stdout.strip() == "True"
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr
