import socket

import pytest

from conftest import NetworkAccessInTest


def test_network_access_fails_loudly():
    with pytest.raises(NetworkAccessInTest):
        socket.create_connection(("93.184.216.34", 80), timeout=1)


def test_import_audiocraft_is_light():
    import subprocess
    import sys

    code = (
        "import sys, audiocraft, audiocraft.models, audiocraft.data.audio\n"
        "heavy = [m for m in ('transformers', 'gradio', 'dora', 'hydra') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
