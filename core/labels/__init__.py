"""Label sets: the set a model scores against (labels, prompt templates), the editable document
behind the Label sets page, import and export (CSV, TXT, JSON), and the on-disk store with its
starter sets.

May import: core's top-level modules only.
"""
