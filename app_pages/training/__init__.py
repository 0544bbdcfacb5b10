"""The parts of the Fine-tune page (app_pages/finetune.py):

- data_choice: the labelled data (an upload or a bulk job's output), its columns and classes;
- settings_form: the method and its settings, checked into a FinetuneSpec;
- spark_choice: on this machine or on Spark, when CLIPLAB_SPARK_MASTER names a master;
- progress: a running job's progress line, training curves and Cancel;
- results: a finished job compared honestly with zero-shot on the validation split.

Streamlit code only; training itself is run by core.training in a process of its own.
"""
