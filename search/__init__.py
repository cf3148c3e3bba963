"""One search over a project: documents (docs_engine's index), task logs, prompt
templates and prompt runs (this app's indexes), each ranked and highlighted."""
