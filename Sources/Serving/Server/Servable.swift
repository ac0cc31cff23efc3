// The seam between the server and the model families (TF Serving's servable / loader / manager,
// in small): the server holds "the served version" as an `any ServableModel`, loads versions
// through one `ServableLoader` that picks the family by the manifest's `model_kind`, and asks each
// `ServableFamily` for its routes. The server itself knows no model: hot reload, verification,
// refusal of corrupt versions, the slot, metrics, limits and timeouts are the same for every kind.
//
//   family        kinds (manifest model_kind)          routes
//   Wide&Deep     widedeep                             POST /v1/predict
//   recommender   RecommenderCheckpoints.kinds         POST /v1/recommend
//
// A server serves one kind at a time: a version of another kind is refused (the last good version
// keeps serving), and a route of another family answers 409 naming the kind being served.
import Foundation
import Checkpoint
import Hummingbird

/// What every served version tells about itself (`/v1/model`, `/metrics`, the log).
public struct ServableInfo: Sendable {
    /// The manifest's `model_kind`.
    public let kind: String
    /// The checkpoint directory name, e.g. `step-000000000200`.
    public let version: String
    public let step: Int
    public let samplesTrained: Int
    public let metrics: [String: Double]
    public let directory: URL
    public let loadedAt: Date
    /// Wall time of load + verify + warm-up.
    public let loadSeconds: Double
    /// Size of `model.safetensors` on disk.
    public let modelFileBytes: Int
    /// When the newest batch trained into this version was produced (ms since the epoch), if
    /// the manifest says (`newest_event_produced_ms`): freshness.
    public let newestEventProducedMs: Int64?

    public init(manifest: CheckpointManifest, directory: URL, loadSeconds: Double, modelFileBytes: Int) {
        kind = manifest.modelKind
        version = directory.lastPathComponent
        step = manifest.step
        samplesTrained = manifest.samplesTrained
        metrics = manifest.metrics
        self.directory = directory
        loadedAt = Date()
        self.loadSeconds = loadSeconds
        self.modelFileBytes = modelFileBytes
        newestEventProducedMs = manifest.newestEventProducedMs
    }
}

/// An immutable, verified model version ready to answer requests, whatever its family.
///
/// Thread safety: served versions are shared by every request; each family documents how its
/// version may be used concurrently.
///
/// ```swift
/// guard let model = slot.current else { return noModel() }   // keeps this version alive
/// log("serving \(model.version) (\(model.kind))")
/// ```
public protocol ServableModel: AnyObject, Sendable {
    var info: ServableInfo { get }
    /// Anything worth one log line when this version is swapped in (none by default).
    var loadNotes: [String] { get }
}

extension ServableModel {
    public var loadNotes: [String] { [] }
    public var kind: String { info.kind }
    public var version: String { info.version }
    public var step: Int { info.step }
}

/// Knobs a family's loader may use (from `ServeSettings`).
public struct ServableLoadOptions: Sendable {
    /// Rows a Wide&Deep workspace holds (`--max-rows`).
    public var workspaceRows: Int
    public init(workspaceRows: Int) { self.workspaceRows = workspaceRows }
}

/// One HTTP route a family contributes. The handler checks the served version's family itself
/// (`ServingState.served(_:for:)`), after reading the body, so one request sees one version.
public struct ServableRoute: Sendable {
    public var method: HTTPRequest.Method
    public var path: String
    public var handle: @Sendable (Request, ServingState) async -> Response

    public init(_ method: HTTPRequest.Method, _ path: String, handle: @escaping @Sendable (Request, ServingState) async -> Response) {
        self.method = method
        self.path = path
        self.handle = handle
    }
}

/// A model family as the server sees it: which manifest kinds it loads, how, and its routes.
///
/// ```swift
/// struct MyFamily: ServableFamily {
///     let name = "my family"
///     let kinds = ["mine"]
///     var routes: [ServableRoute] { [ServableRoute(.post, "/v1/mine") { request, state in … }] }
///     func load(_ dir: URL, manifest: CheckpointManifest, previous: (any ServableModel)?,
///               options: ServableLoadOptions) throws -> any ServableModel { … }
/// }
/// ```
public protocol ServableFamily: Sendable {
    /// For messages: "Wide&Deep", "recommender".
    var name: String { get }
    /// The manifest `model_kind`s whose versions this family loads.
    var kinds: [String] { get }
    var routes: [ServableRoute] { get }
    /// Verifies, loads and warms up the version at `dir` (whose manifest says one of `kinds`).
    /// Throws with every problem found; never returns a half-loaded version. Slow: the watcher
    /// calls it on a thread of its own. `previous` is the version being served, if any (same
    /// kind), for what a family can share between versions.
    func load(_ dir: URL, manifest: CheckpointManifest, previous: (any ServableModel)?,
              options: ServableLoadOptions) throws -> any ServableModel
}

/// Every family the server knows, by kind (the server's side of `model.kind`).
public enum ServableFamilies {
    public static let all: [any ServableFamily] = [WideDeepServing(), RecommenderServing()]

    public static func family(kind: String) -> (any ServableFamily)? {
        all.first { $0.kinds.contains(kind) }
    }

    /// Every kind a server can serve.
    public static var kinds: [String] { all.flatMap(\.kinds) }

    /// Every route of every family.
    public static var routes: [ServableRoute] { all.flatMap(\.routes) }
}

/// Why a version was refused before loading it.
public enum ServableLoadError: Error, CustomStringConvertible {
    /// The version holds another kind than the one being served.
    case kindChanged(version: String, kind: String, serving: String, servingVersion: String)
    /// No family serves this kind.
    case unknownKind(version: String, kind: String)

    public var description: String {
        switch self {
        case let .kindChanged(version, kind, serving, servingVersion):
            "checkpoint \(version) holds a '\(kind)' model but this server serves '\(serving)' (\(servingVersion)); "
                + "a server serves one model kind: start another `streamrec serve` on its own checkpoints directory for '\(kind)'"
        case let .unknownKind(version, kind):
            "checkpoint \(version) holds a '\(kind)' model, which streamrec serve cannot serve "
                + "(kinds it serves: \(ServableFamilies.kinds.joined(separator: ", ")))"
        }
    }

    /// The `/metrics` label of the refusal.
    public var reason: String {
        switch self {
        case .kindChanged: "kind_changed"
        case .unknownKind: "invalid_checkpoint"
        }
    }
}

/// Loads any version: the manifest's kind picks the family; a kind other than the one served is
/// refused before anything is read beyond the manifest.
public enum ServableLoader {
    public static func load(directory dir: URL, previous: (any ServableModel)?, options: ServableLoadOptions) throws -> any ServableModel {
        let manifest: CheckpointManifest
        do {
            manifest = try CheckpointStore.loadManifest(dir)
        } catch {
            throw CheckpointLoadError("checkpoint \(dir.path) failed verification: \(CheckpointManifest.fileName): \(error)")
        }
        let version = dir.lastPathComponent
        if let previous, previous.kind != manifest.modelKind {
            throw ServableLoadError.kindChanged(version: version, kind: manifest.modelKind, serving: previous.kind,
                                                servingVersion: previous.version)
        }
        guard let family = ServableFamilies.family(kind: manifest.modelKind) else {
            throw ServableLoadError.unknownKind(version: version, kind: manifest.modelKind)
        }
        let model = try family.load(dir, manifest: manifest, previous: previous, options: options)
        // The family read the manifest again while verifying; a rewrite in between could change the kind.
        if let previous, previous.kind != model.kind {
            throw ServableLoadError.kindChanged(version: version, kind: model.kind, serving: previous.kind,
                                                servingVersion: previous.version)
        }
        return model
    }
}

