"""Early stopping of the members' fits (issue 25): a validation loss that only creeps down is not
worth more epochs; one that really falls is."""
import keras
import numpy as np

from intentkit.training import members


def fitted_epochs(learning_rate):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    history = members.fit(model, members.Dataset(x, y, x, y, x, y), learning_rate, epochs=20,
                          patience=2, batch_size=64, name="probe")
    keras.backend.clear_session()
    return history["val_loss"]


def test_a_validation_loss_that_only_creeps_down_stops_the_fit():
    # One Adam step of 1e-5 an epoch moves the loss far less than EARLY_STOPPING_MIN_DELTA.
    losses = fitted_epochs(1e-5)
    assert losses[-1] < losses[0]  # it improved, a little
    assert len(losses) == 3  # the first epoch, then the patience of 2


def test_a_validation_loss_that_falls_keeps_the_fit_going():
    losses = fitted_epochs(0.1)
    assert len(losses) > 3 and losses[0] - losses[-1] > members.EARLY_STOPPING_MIN_DELTA
