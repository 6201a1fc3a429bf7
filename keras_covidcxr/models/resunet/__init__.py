"""See the module files; public names are exported from keras_covidcxr."""
