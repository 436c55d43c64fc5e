"""The model-card templates (Jinja, rendered by pipelines/cards.py). pyproject.toml installs this
folder as the package pipelines.model_cards; this file makes it a regular package, which an editable
install (`pip install -e .`) needs to find it here."""
