"""Demos of audiocraft: ``python demos/musicgen_app.py`` starts the MusicGen web app (needs ``pip install gradio``)."""
