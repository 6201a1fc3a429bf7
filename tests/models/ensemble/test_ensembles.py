import keras
import numpy as np
import pytest

from keras_covidcxr import ConfigError, MajorityVoteEnsemble, WeightedAverageEnsemble


class TakeMember(keras.layers.Layer):
    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = index

    def call(self, x):
        return x[:, self.index]


def fixed_members(count, num_classes):
    """Members whose output is read from the input: x[:, m] is member m's output."""
    width = 1 if num_classes == 2 else num_classes
    members = []
    for m in range(count):
        inputs = keras.Input((count, width))
        member = keras.Model(inputs, TakeMember(m)(inputs), name=f"member{m}")
        member.num_classes = num_classes
        members.append(member)
    return members


def run(ensemble, member_outputs):
    outputs = ensemble(np.asarray(member_outputs, "float32"))
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def test_weighted_average_multiclass_by_hand():
    ensemble = WeightedAverageEnsemble(fixed_members(3, 3), weights=[2, 1, 1])
    out = run(ensemble, [[[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]])
    # 0.5 * [.6 .3 .1] + 0.25 * [.1 .8 .1] + 0.25 * [.2 .2 .6]
    np.testing.assert_allclose(out["probabilities"], [[0.375, 0.4, 0.225]], atol=1e-6)
    assert out["label"].tolist() == [1]
    assert out["member_labels"].tolist() == [[0, 1, 2]]
    assert out["member_probabilities"].shape == (1, 3, 3)


def test_weighted_average_binary_uses_the_threshold():
    members = fixed_members(2, 2)
    out = run(WeightedAverageEnsemble(members, weights=[1, 3]), [[[0.2], [0.6]], [[0.1], [0.3]]])
    # p(covid) = 0.25 * p0 + 0.75 * p1
    np.testing.assert_allclose(out["probabilities"][:, 1], [0.5, 0.25], atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    assert out["label"].tolist() == [1, 0]  # 0.5 reaches the default threshold
    out = run(WeightedAverageEnsemble(members, weights=[1, 3], threshold=0.2), [[[0.1], [0.3]]])
    assert out["label"].tolist() == [1]
    assert out["member_labels"].tolist() == [[0, 0]]


def test_members_vote_at_their_own_thresholds():
    members = fixed_members(2, 2)
    outputs = [[[0.30], [0.60]], [[0.10], [0.45]]]
    default = run(WeightedAverageEnsemble(members), outputs)
    assert default["member_labels"].tolist() == [[0, 1], [0, 0]]
    own = run(WeightedAverageEnsemble(members, member_thresholds=[0.25, 0.4]), outputs)
    assert own["member_labels"].tolist() == [[1, 1], [0, 1]]
    np.testing.assert_allclose(own["probabilities"], default["probabilities"])  # only the votes change
    vote = run(MajorityVoteEnsemble(members, member_thresholds=[0.25, 0.4]), outputs)
    assert vote["member_labels"].tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ConfigError, match="one threshold per member"):
        WeightedAverageEnsemble(members, member_thresholds=[0.5])
    with pytest.raises(ConfigError, match="strictly between"):
        WeightedAverageEnsemble(members, member_thresholds=[0.5, 1.0])
    with pytest.raises(ConfigError, match="two classes"):
        WeightedAverageEnsemble(fixed_members(2, 3), member_thresholds=[0.5, 0.5])


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")], [[1.0, 2.0]]]
)
def test_weights_are_validated(weights):
    with pytest.raises(ConfigError):
        WeightedAverageEnsemble(fixed_members(2, 3), weights=weights)


def test_weights_are_normalised():
    assert WeightedAverageEnsemble(fixed_members(3, 3), weights=[1, 1, 2]).weights_normalised == [0.25, 0.25, 0.5]


def test_majority_vote_plain_majority():
    out = run(MajorityVoteEnsemble(fixed_members(3, 3)), [[[0.9, 0.05, 0.05], [0.2, 0.1, 0.7], [0.1, 0.1, 0.8]]])
    assert out["label"].tolist() == [2]  # two votes for class 2, though member 0 is surest of class 0
    np.testing.assert_allclose(out["probabilities"], [[0.4, 0.25 / 3, 1.55 / 3]], atol=1e-6)


def test_majority_vote_two_members_disagreeing_binary():
    members = fixed_members(2, 2)
    # member0 says covid with 0.6, member1 says non-covid with 0.9 (p = 0.1): mean p(covid) = 0.35
    out = run(MajorityVoteEnsemble(members), [[[0.6], [0.1]], [[0.95], [0.3]]])
    assert out["label"].tolist() == [0, 1]  # mean p(covid): 0.35 -> non-covid, 0.625 -> covid
    assert run(MajorityVoteEnsemble(members, tie_break="lowest_index"), [[[0.95], [0.3]]])["label"].tolist() == [0]
    assert run(MajorityVoteEnsemble(members, tie_break=1), [[[0.6], [0.1]]])["label"].tolist() == [1]


def test_majority_vote_three_classes_three_different_votes():
    members = fixed_members(3, 3)
    votes = [[[0.5, 0.3, 0.2], [0.35, 0.45, 0.2], [0.05, 0.35, 0.6]]]
    # mean probabilities: [0.3, 0.3667, 0.3333] -> class 1 wins the three-way tie
    assert run(MajorityVoteEnsemble(members), votes)["label"].tolist() == [1]
    assert run(MajorityVoteEnsemble(members, tie_break="lowest_index"), votes)["label"].tolist() == [0]
    assert run(MajorityVoteEnsemble(members, tie_break=2), votes)["label"].tolist() == [2]
    # a class outside the tie never wins through the tie rule
    assert run(MajorityVoteEnsemble(members, tie_break=2), [[[0.9, 0.05, 0.05]] * 2 + [[0.1, 0.1, 0.8]]])["label"].tolist() == [0]


@pytest.mark.parametrize("tie_break", ["coin_flip", 3, -1, True])
def test_tie_break_is_validated(tie_break):
    with pytest.raises(ConfigError):
        MajorityVoteEnsemble(fixed_members(2, 3), tie_break=tie_break)


def test_members_must_agree():
    with pytest.raises(ConfigError):
        WeightedAverageEnsemble(fixed_members(1, 3) + fixed_members(2, 2)[1:])  # 3 classes vs 2
    with pytest.raises(ConfigError):
        MajorityVoteEnsemble([])


@pytest.mark.parametrize("cls,kwargs", [(WeightedAverageEnsemble, {"weights": [1, 2], "threshold": 0.3,
                                                                    "member_thresholds": [0.4, 0.6]}),
                                         (MajorityVoteEnsemble, {"tie_break": 1})])
def test_ensembles_serialization_round_trip(cls, kwargs):
    from keras_covidcxr import CXRClassifier

    # the ensemble's own config is what round-trips here; densenet121 members: tests/presets round trip
    members = [CXRClassifier("resunet_encoder", head_units=4, input_shape=(32, 32, 3), encoder_filters=(4, 8, 16),
                             name=n) for n in "ab"]
    ensemble = cls(members, **kwargs)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ensemble))
    assert type(restored) is cls
    assert restored.member_names == ["a", "b"]
    config = {k: v for k, v in restored.get_config().items() if k != "members"}
    assert config == {k: v for k, v in ensemble.get_config().items() if k != "members"}
