"""A lab package with a model factory and a data source factory for `kind = "custom"`."""
