"""A bare Flask JSON echo: the baseline intake's throughput is measured against."""

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo")
    def echo():  # type: ignore[no-untyped-def]
        return jsonify(request.get_json()), 201

    return app
