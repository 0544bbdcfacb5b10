"""The parts of the Label sets page (app_pages/label_sets.py):

- drafts: the set being edited as kept in session state (a base document, the edits made to it,
  an editor generation) and the one-off notice shown after an action;
- adding: adding many labels at once, pasted or imported from a CSV, TXT or JSON file.

Streamlit code only; label sets are read, checked and saved by core.labels.
"""
