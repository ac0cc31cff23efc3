// swift-tools-version:6.0
// StreamRec: distributed online-learning training cluster.
// Module dependencies point one way: C shims → Numerics → Models → Features/Training → Checkpoint →
// Cluster/Streaming → CLI. See docs/ARCHITECTURE.md.
import PackageDescription

// `-Ounchecked` only for the numeric kernels (Sources/Numerics, Sources/Kernels): their hot loops
// are checked against slow reference versions by NumericsTests and ModelsTests, which also run on
// the release build (scripts/test.sh). Everything that sees outside input (parsers, codecs, the
// models' batch handling, the trainer) builds with normal checks. See docs/ARCHITECTURE.md.
//
// On an x86_64 build host with AVX2 and FMA (every machine kind this project runs on), the kernels
// are compiled for it: SIMD8 code then runs in one 256-bit instruction instead of two 128-bit ones.
// The binary is for this host's kind (as -march=native); set STREAMREC_PORTABLE=1 to build for
// any x86_64. No fused multiply-adds are formed (Swift does not contract a·b + c), so results are
// the same bits either way.
import Foundation

let hostCPUFlags: Set<Substring> = {
    #if arch(x86_64) && os(Linux)
    guard ProcessInfo.processInfo.environment["STREAMREC_PORTABLE"] == nil,
          let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
    return Set(line.split(separator: " "))
    #else
    return []
    #endif
}()
let hostTuning: [String] = ["avx2", "fma", "bmi2", "movbe", "f16c"].allSatisfy { hostCPUFlags.contains(Substring($0)) }
    ? ["-target-cpu", "haswell"] : []

let fastMath: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"] + hostTuning, .when(configuration: .release)),
]

let package = Package(
    name: "StreamRec",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "streamrec", targets: ["streamrec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // MARK: C libraries (system-library targets; shim headers expose macros as functions)
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CRdKafka", path: "Sources/CRdKafka", pkgConfig: "rdkafka",
                       providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        // A TLS tunnel for hiredis (OpenSSL): Debian's hiredis 0.14 has no SSL (see its header).
        .target(name: "CRedisTLS", path: "Sources/CRedisTLS",
                linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),

        // MARK: Swift modules, one job each
        .target(name: "StreamRecNumerics", dependencies: ["COpenBLAS"], path: "Sources/Numerics", swiftSettings: fastMath),
        // Layers (forward/backward pairs) and optimizers: the kernels the models are built from.
        .target(name: "Kernels", dependencies: ["StreamRecNumerics"], swiftSettings: fastMath),
        // The one file wrapper (open/read/write/fsync on swift-system's FileDescriptor).
        .target(name: "FileAccess", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "Features", dependencies: ["StreamRecNumerics", "FileAccess", .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "Models", dependencies: ["StreamRecNumerics", "Kernels", "Features", "Checkpoint"]),
        .target(name: "Checkpoint", dependencies: [
            "StreamRecNumerics", "FileAccess", .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "Training", dependencies: ["StreamRecNumerics", "Features", "Models", "Checkpoint", "Cluster", "Observability", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Cluster", dependencies: ["CMPI"]),
        .target(name: "Streaming", dependencies: ["CRdKafka", "CHiredis", "CRedisTLS", .product(name: "Logging", package: "swift-log")]),
        .target(name: "FeatureStore", dependencies: ["Features", "Streaming", .product(name: "Crypto", package: "swift-crypto")]),
        // Logs and metrics of every process: the log handler (text/json), the metric names and
        // help (one catalogue), the Prometheus registry behind swift-metrics, and the small
        // GET /metrics endpoint of featurize and the trainer.
        .target(name: "Observability", dependencies: [
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Featurize", dependencies: ["Features", "Streaming", "FeatureStore", "Observability", .product(name: "Logging", package: "swift-log")]),
        .target(name: "TrainerService", dependencies: ["Training", "FeatureStore", "Streaming", "Cluster", "Features", "Models", "Checkpoint", "Observability", .product(name: "Logging", package: "swift-log")]),
        // Serving reads the feature store (FeatureStore, Streaming: hiredis) but not Training: no Open MPI.
        .target(name: "Serving", dependencies: [
            "Features", "Models", "Checkpoint", "FeatureStore", "Streaming", "Observability", .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The live dashboard (`streamrec dashboard`): reads Redis, serve and the checkpoints; no Open MPI.
        .target(name: "Dashboard", dependencies: [
            "FeatureStore", "Streaming", "Checkpoint", "Observability", .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Fixtures shared by the test targets (redis-server, subprocesses, ports, the binary).
        .target(name: "TestSupport", dependencies: ["Streaming", "Observability", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "streamrec", dependencies: [
            "StreamRecNumerics", "Features", "Models", "Training", "Checkpoint", "Cluster", "Streaming",
            "FeatureStore", "Featurize", "Serving", "TrainerService", "Dashboard", "Observability", .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            "Yams",
        ], path: "Sources/CLI"),

        // MARK: Tests
        .testTarget(name: "NumericsTests", dependencies: ["StreamRecNumerics"]),
        .testTarget(name: "FeaturesTests", dependencies: ["Features", "StreamRecNumerics"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Kernels", "StreamRecNumerics", "Features"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "StreamRecNumerics"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Features", "Checkpoint", "StreamRecNumerics", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "NativeTests", dependencies: ["Cluster", "Streaming", "TestSupport"]),
        .testTarget(name: "ObservabilityTests", dependencies: ["Observability", "Streaming", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ClusterTests", dependencies: ["TestSupport", "Observability", "streamrec", "Features", "FeatureStore", "Streaming", "StreamRecNumerics", "TrainerService"]),
        .testTarget(name: "FeatureStoreTests", dependencies: ["FeatureStore", "Features", "Streaming", "TestSupport"]),
        .testTarget(name: "FeaturizeTests", dependencies: ["Featurize", "Observability", "FeatureStore", "Features", "Streaming", "StreamRecNumerics", "TestSupport", "streamrec", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ServingTests", dependencies: [
            "Serving", "Training", "Models", "Features", "Checkpoint", "FeatureStore", "Streaming", "StreamRecNumerics", "TestSupport",
            "Observability", .product(name: "Logging", package: "swift-log"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "DashboardTests", dependencies: ["Dashboard", "FeatureStore", "Streaming", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["streamrec", "TestSupport", "Models", "Observability", "Yams"], exclude: ["Fixtures"]),
    ]
)
