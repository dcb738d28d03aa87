"""Small Transformer building blocks shared by the examples.

Plain Keras layers, no keras-hub: a learned position embedding and a
pre-layer-norm Transformer block whose attention mask comes from
`keras_dynmask` (`PaddingMask` for the encoder, `CausalMask` for the
decoder).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynmask_examples")
class PositionEmbedding(keras.layers.Layer):
    """Learned position embeddings for sequences up to `sequence_length`.

    Args:
        sequence_length: int >= 1, the longest sequence the model takes.
        initializer: initializer of the `[sequence_length, dim]` table.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: `[B, T, dim]` embeddings, `T <= sequence_length`.
        positions: optional int `[B, T]` position of each token (e.g.
            restarting at 0 in each packed segment); default `0 .. T-1`.

    Returns:
        `[B, T, dim]` position embeddings to add to `inputs`.

    Example:

    >>> import numpy as np
    >>> PositionEmbedding(16)(np.zeros((2, 5, 8), "float32")).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(
                "`sequence_length` must be an int >= 1. "
                f"Received: sequence_length={sequence_length!r}"
            )
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer,
        )

    def call(self, inputs, positions=None):
        if positions is not None:
            return ops.take(self.embeddings, ops.cast(positions, "int32"), axis=0)
        length = ops.shape(inputs)[1]
        embeddings = ops.expand_dims(self.embeddings[:length], 0)
        return ops.broadcast_to(embeddings, ops.shape(inputs))

    def compute_output_shape(self, inputs_shape, positions_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config


def embed(
    token_ids, vocabulary_size, sequence_length, dim, dropout, name, position_ids=None
):
    """Token plus position embeddings, normalised, with dropout.

    Args:
        token_ids: symbolic int ids `[B, T]`.
        position_ids: optional symbolic int `[B, T]` positions.
        vocabulary_size: int, rows of the token embedding.
        sequence_length: int, rows of the position embedding.
        dim: int, the model width.
        dropout: float, dropout rate.
        name: prefix of the layer names.

    Returns:
        Symbolic `[B, T, dim]` embeddings.
    """
    # BERT's initialisation: tokens and positions at the same small scale,
    # so neither drowns the other after the sum is normalised.
    tokens = keras.layers.Embedding(
        vocabulary_size,
        dim,
        embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name=f"{name}_tokens",
    )(token_ids)
    positions = PositionEmbedding(
        sequence_length,
        initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name=f"{name}_positions",
    )(tokens, positions=position_ids)
    x = keras.layers.Add(name=f"{name}_sum")([tokens, positions])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)


def transformer_block(x, attention_mask, num_heads, intermediate_dim, dropout, name):
    """One pre-layer-norm Transformer block (self-attention, then MLP).

    Args:
        x: symbolic `[B, T, dim]` hidden states.
        attention_mask: symbolic bool `[B, T, T]`, True where query `i` may
            attend key `j` (from `PaddingMask` or `CausalMask`).
        num_heads: int, attention heads (`dim` must divide by it).
        intermediate_dim: int, width of the MLP.
        dropout: float, dropout rate.
        name: prefix of the layer names.

    Returns:
        Symbolic `[B, T, dim]` hidden states.
    """
    dim = x.shape[-1]
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_attention_norm")(x)
    h = keras.layers.MultiHeadAttention(
        num_heads, dim // num_heads, dropout=dropout, name=f"{name}_attention"
    )(h, h, attention_mask=attention_mask)
    h = keras.layers.Dropout(dropout, name=f"{name}_attention_dropout")(h)
    x = keras.layers.Add(name=f"{name}_attention_residual")([x, h])
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_mlp_norm")(x)
    h = keras.layers.Dense(intermediate_dim, activation="gelu", name=f"{name}_mlp_in")(h)
    h = keras.layers.Dense(dim, name=f"{name}_mlp_out")(h)
    h = keras.layers.Dropout(dropout, name=f"{name}_mlp_dropout")(h)
    return keras.layers.Add(name=f"{name}_mlp_residual")([x, h])


def transformer_stack(x, attention_mask, num_layers, num_heads, intermediate_dim, dropout):
    """`num_layers` Transformer blocks, then the final layer norm.

    Args:
        x: symbolic `[B, T, dim]` embeddings (from `embed`).
        attention_mask: symbolic bool `[B, T, T]`, shared by every block.
        num_layers: int, blocks (named `block_0`, `block_1`, ...).
        num_heads: int, attention heads per block.
        intermediate_dim: int, width of each block's MLP.
        dropout: float, dropout rate.

    Returns:
        Symbolic `[B, T, dim]` hidden states, normalised (`final_norm`).
    """
    for i in range(num_layers):
        x = transformer_block(
            x, attention_mask, num_heads, intermediate_dim, dropout, f"block_{i}"
        )
    return keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)


@keras.saving.register_keras_serializable(package="keras_dynmask_examples")
class GatherPositions(keras.layers.Layer):
    """Picks the hidden states at given positions of each sequence.

    Call arguments:
        hidden: `[B, T, dim]` hidden states.
        positions: int `[B, P]` positions into `T`.

    Returns:
        `[B, P, dim]`: `hidden[b, positions[b, p]]`.

    Example:

    >>> import numpy as np
    >>> hidden = np.arange(12, dtype="float32").reshape(1, 6, 2)
    >>> GatherPositions()(hidden, np.array([[4, 0]])).numpy().tolist()
    [[[8.0, 9.0], [0.0, 1.0]]]
    """

    def call(self, hidden, positions):
        import tensorflow as tf

        return tf.gather(hidden, tf.cast(positions, "int32"), batch_dims=1)

    def compute_output_shape(self, hidden_shape, positions_shape):
        return tuple(positions_shape) + (hidden_shape[-1],)
