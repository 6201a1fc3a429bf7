"""Build an UNTRAINED pipeline preset, to try the CLI and the API before trained weights exist.

Its outputs mean nothing: `covidcxr predict` refuses it unless `--allow-untrained` is given.

    python examples/build_untrained_preset.py /tmp/covidcxr-untrained            # small, quick
    python examples/build_untrained_preset.py /tmp/covidcxr-paper --paper        # the paper's networks
    covidcxr predict keras_covidcxr/samples/chest_xray_covid_pa.png \\
        --preset /tmp/covidcxr-untrained --allow-untrained
"""

import argparse

from keras_covidcxr import CXRClassifier, MajorityVoteEnsemble, Pipeline, ResUnet, WeightedAverageEnsemble
from keras_covidcxr.presets.preset_format import is_preset_folder

PAPER_BACKBONES = ("densenet201", "resnet152", "vgg19")
SMALL_BACKBONES = ("densenet121", "resnet50", "vgg16")


def build(paper, num_classes, ensemble):
    if paper:
        segmenter, backbones, shape = ResUnet(), PAPER_BACKBONES, (224, 224, 3)
    else:
        segmenter, backbones, shape = ResUnet(input_size=128, filters=(16, 32, 64, 128)), SMALL_BACKBONES, (128, 128, 3)
    members = [CXRClassifier(b, num_classes=num_classes, input_shape=shape, name=b) for b in backbones]
    if ensemble == "weighted_average":
        return Pipeline(segmenter, WeightedAverageEnsemble(members))
    return Pipeline(segmenter, MajorityVoteEnsemble(members))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write (must not exist, or be empty)")
    parser.add_argument("--paper", action="store_true", help="ResUnet 256 + DenseNet-201, ResNet-152, VGG-19")
    parser.add_argument("--num-classes", type=int, default=2, choices=(2, 3))
    parser.add_argument("--ensemble", default="weighted_average", choices=("weighted_average", "majority_vote"))
    args = parser.parse_args()
    if is_preset_folder(args.out):
        print(f"{args.out} already holds a preset; reusing it")
        return
    pipeline = build(args.paper, args.num_classes, args.ensemble)
    pipeline.save_to_preset(args.out, description="UNTRAINED demonstration preset (random weights)")
    print(f"wrote an untrained preset to {args.out}")


if __name__ == "__main__":
    main()
