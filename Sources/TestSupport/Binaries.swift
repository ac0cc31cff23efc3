import Foundation

/// Environment that lets Open MPI run as root on loopback only (containers, CI).
public let mpiTestEnvironment: [String: String] = [
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_btl": "self,vader,tcp",
]

/// The `streamrec` binary: $STREAMREC_BIN, next to the test bundle, or .build/debug above this file.
public func streamrecBinary(filePath: String = #filePath) -> String? {
    let fm = FileManager.default
    if let env = ProcessInfo.processInfo.environment["STREAMREC_BIN"], fm.isExecutableFile(atPath: env) { return env }
    var candidates: [URL] = []
    let bundle = Bundle.main.bundleURL
    candidates.append(bundle.appendingPathComponent("streamrec"))
    candidates.append(bundle.deletingLastPathComponent().appendingPathComponent("streamrec"))
    if let exe = Bundle.main.executableURL?.deletingLastPathComponent() {
        candidates.append(exe.appendingPathComponent("streamrec"))
        candidates.append(exe.deletingLastPathComponent().appendingPathComponent("streamrec"))
    }
    var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while dir.path != "/" {
        candidates.append(dir.appendingPathComponent(".build/debug/streamrec"))
        dir.deleteLastPathComponent()
    }
    return candidates.first { fm.isExecutableFile(atPath: $0.path) }?.path
}

