"""Everything that fits, evaluates or exports a model, and the research around it: the only part of the
package that needs TensorFlow and Keras (the `train` extra)."""
