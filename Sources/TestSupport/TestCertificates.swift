// A throwaway certificate authority for TLS tests, made with the `openssl` command: a CA, a
// server certificate for 127.0.0.1/localhost and a client certificate, all signed by it.
import Foundation

public struct TestCertificates: Sendable {
    public let directory: URL
    public var ca: String { path("ca.crt") }
    public var serverCertificate: String { path("server.crt") }
    public var serverKey: String { path("server.key") }
    public var clientCertificate: String { path("client.crt") }
    public var clientKey: String { path("client.key") }

    /// Writes a new CA and its certificates into `directory` (which the caller removes).
    public init(in directory: URL) throws {
        guard let openssl = findExecutable("openssl") else { throw FixtureError("openssl not found; run scripts/setup.sh") }
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func run(_ args: [String]) throws {
            let r = try runProcess(openssl, args, timeout: .seconds(30))
            if r.status != 0 { throw FixtureError("openssl \(args.joined(separator: " ")) failed: \(r.stderr)") }
        }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try run(["req", "-x509"] + key + ["-keyout", path("ca.key"), "-out", ca, "-days", "2", "-subj", "/CN=StreamRec test CA"])
        for (name, ext) in [("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                            ("client", "extendedKeyUsage=clientAuth\n")] {
            try ext.write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            try run(["req"] + key + ["-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=streamrec-\(name)"])
            try run(["x509", "-req", "-in", path("\(name).csr"), "-CA", ca, "-CAkey", path("ca.key"), "-CAcreateserial",
                     "-out", path("\(name).crt"), "-days", "2", "-extfile", path("\(name).ext")])
        }
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}
