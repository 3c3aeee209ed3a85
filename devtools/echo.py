"""A bare Flask JSON echo: the baseline intake's throughput is measured against."""

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo")
    def echo() -> tuple[Response, int]:
        return jsonify(request.get_json()), 201

    return app
