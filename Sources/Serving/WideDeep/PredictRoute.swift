// The Wide&Deep family on the server: its versions (`WideDeepServable`) and its route,
// POST /v1/predict (click probabilities for Criteo rows).
import Foundation
import Checkpoint
import Features
import Hummingbird
import NIOCore
import Models

/// Wide&Deep as a `ServableFamily`.
public struct WideDeepServing: ServableFamily {
    public let name = "Wide&Deep"
    public let kinds = [WideDeepCheckpoint.modelKind]
    public var routes: [ServableRoute] { [ServableRoute(.post, "/v1/predict", handle: predict)] }

    public init() {}

    public func load(_ dir: URL, manifest: CheckpointManifest, previous: (any ServableModel)?,
                     options: ServableLoadOptions) throws -> any ServableModel {
        try WideDeepServable.load(directory: dir, workspaceRows: options.workspaceRows, previous: previous as? WideDeepServable)
    }
}

/// `POST /v1/predict`: rows or instances → one click probability each.
func predict(_ request: Request, state: ServingState) async -> Response {
    let body: ByteBuffer
    switch await readBody(request, limits: state.limits, hint: "send fewer rows per request") {
    case .body(let b): body = b
    case .refused(let response): return response
    }
    // Take the model before parsing so one request sees one version from start to end.
    let model: WideDeepServable
    switch state.served(WideDeepServable.self, for: "/v1/predict") {
    case .model(let m): model = m
    case .refused(let response): return response
    }
    let rows: [CriteoRow]
    do {
        rows = try PredictRequest.parse(body.readableBytesView, limits: state.limits)
    } catch {
        return errorResponse(error)
    }
    let probabilities = model.predict(rows: rows)
    state.metrics.recordRows(rows.count)
    var out = "{\"model_version\":\"\(model.version)\",\"step\":\(model.step),\"probabilities\":["
    out.reserveCapacity(out.utf8.count + probabilities.count * 12)
    for (i, p) in probabilities.enumerated() {
        if i > 0 { out += "," }
        out += p.isFinite ? "\(p)" : "null"
    }
    out += "]}"
    return rawJSON(200, out)
}
