"""Query an exported classifier the way TF Serving clients do: REST with base64
image bytes, or gRPC with a `PredictRequest` (from `tensorflow-serving-api`).

Serve an export first, e.g. with the TF Serving docker image:

    docker run -p 8500:8500 -p 8501:8501 \
        -v "$PWD/saved_models/shapes92:/models/shapes92" -e MODEL_NAME=shapes92 tensorflow/serving

then:

    python examples/serving_client.py --rest http://localhost:8501 image.png
    python examples/serving_client.py --grpc localhost:8500 image.png
    python examples/serving_client.py --local saved_models/shapes92/1 image.png   # no server

The `--local` mode feeds the same `PredictRequest` to the SavedModel in this process.
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.request
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2

SIGNATURE = "serving_bytes"
INPUT = "image_bytes"


def rest_body(paths: list[Path]) -> dict:
    """The JSON body of `POST /v1/models/<name>:predict` (row format, bytes as b64)."""
    return {
        "signature_name": SIGNATURE,
        "instances": [{INPUT: {"b64": base64.b64encode(p.read_bytes()).decode()}} for p in paths],
    }


def predict_request(paths: list[Path], model_name: str) -> predict_pb2.PredictRequest:
    """A gRPC `PredictRequest` for the `serving_bytes` signature."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE)
    )
    request.inputs[INPUT].CopyFrom(
        tf.make_tensor_proto([p.read_bytes() for p in paths], dtype=tf.string)
    )
    return request


def run_locally(export_path: str, request: predict_pb2.PredictRequest) -> dict:
    """What TF Serving would answer, computed with the SavedModel in this process."""
    signature = tf.saved_model.load(export_path).signatures[request.model_spec.signature_name]
    inputs = {name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()}
    return {name: value.numpy().tolist() for name, value in signature(**inputs).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--rest", help="TF Serving REST address, e.g. http://localhost:8501")
    target.add_argument("--grpc", help="TF Serving gRPC address, e.g. localhost:8500")
    target.add_argument("--local", help="an exported version directory, queried in-process")
    parser.add_argument("--model-name", default="shapes92")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()

    if args.rest:
        url = f"{args.rest}/v1/models/{args.model_name}:predict"
        data = json.dumps(rest_body(args.images)).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data)) as response:
            answer = json.load(response)["predictions"]
    elif args.grpc:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(args.grpc))
        result = stub.Predict(predict_request(args.images, args.model_name), 10.0)
        answer = {name: tf.make_ndarray(t).tolist() for name, t in result.outputs.items()}
    else:
        answer = run_locally(args.local, predict_request(args.images, args.model_name))
    print(json.dumps(answer, indent=1, default=lambda b: b.decode())[:2000])


if __name__ == "__main__":
    main()
