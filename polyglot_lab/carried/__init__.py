"""Earlier modules' models that later modules start from (see polyglot_lab/models.py): each file is an earlier
module's answer, shipped to learners with the module that needs it."""
