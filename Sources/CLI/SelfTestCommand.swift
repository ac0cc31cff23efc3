// `streamrec selftest`: checks that the native libraries (Open MPI, librdkafka, hiredis) are
// installed and work from Swift, each through the same funnel the real commands use.
//   mpirun -np 2 --oversubscribe streamrec selftest mpi
//   streamrec selftest kafka [--bootstrap HOST:PORT]
//   streamrec selftest redis [--redis HOST:PORT]

import ArgumentParser
import Cluster
import Foundation
import Streaming

struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check that the native libraries (MPI, Kafka, Redis) work on this machine.",
        discussion: """
            Each subcommand runs a small round trip through StreamRec's wrapper of one C library \
            and exits non-zero with the library's error text if anything is wrong.
            """,
        subcommands: [MPICheck.self, KafkaCheck.self, RedisCheck.self])
}

/// A failed self-check: printed as one line, exit code 1.
struct SelfTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw SelfTestFailure(message()) }
}

private func jsonArray<T>(_ values: some Sequence<T>) -> String {
    "[" + values.map { "\($0)" }.joined(separator: ",") + "]"
}

// MARK: - mpi

extension SelfTest {
    struct MPICheck: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mpi",
            abstract: "Run collectives across the ranks of an mpirun job; prints one JSON line per rank.",
            discussion: """
                Rank r contributes [r+1, 2(r+1), 3(r+1), 4(r+1)] to an allreduce-sum and r+1 values \
                (100r, 100r+1, …) to an allgatherv; rank 0 broadcasts a string and four floats. \
                Each rank checks the results itself and prints \
                {"rank":R,"size":N,"allreduce":[…],"allgatherv":[…],…}. \
                Example: mpirun -np 2 --oversubscribe streamrec selftest mpi
                """)

        @Flag(help: "Also admit one rank into the others via open_port/accept/connect/merge (dynamic join).")
        var dynamic = false

        func run() throws {
            let level = try MPI.initialize(required: .funneled)
            let world = try MPI.world()
            let r = world.rank, n = world.size

            var reduced: [Float] = (1 ... 4).map { Float($0 * (r + 1)) }
            try world.allreduceSum(&reduced)
            let triangle = Float(n * (n + 1) / 2)
            try require(reduced == (1 ... 4).map { Float($0) * triangle }, "rank \(r): allreduce gave \(reduced)")

            let local: [Float] = (0 ... r).map { Float(100 * r + $0) }
            let gathered = try world.allgatherv(local)
            let expected: [Float] = (0 ..< n).flatMap { q in (0 ... q).map { Float(100 * q + $0) } }
            try require(gathered.values == expected && gathered.counts == (0 ..< n).map { $0 + 1 },
                        "rank \(r): allgatherv gave \(gathered.values) counts \(gathered.counts)")
            let gatheredIds = try world.allgatherv([Int32](repeating: Int32(r), count: r + 1))
            try require(gatheredIds.part(n - 1).allSatisfy { $0 == Int32(n - 1) }, "rank \(r): int32 allgatherv gave \(gatheredIds.values)")

            let message = try world.broadcast(bytes: r == 0 ? Array("hello from rank 0".utf8) : [], root: 0)
            var floats: [Float] = r == 0 ? [1.5, -2, 3.25, 0] : [0, 0, 0, 0]
            try world.broadcast(&floats, root: 0)
            try require(floats == [1.5, -2, 3.25, 0], "rank \(r): float broadcast gave \(floats)")
            let total = try world.allreduce(Int64(r + 1))
            let maxRank = try world.allreduce(Double(r), .max)
            try require(total == Int64(n * (n + 1) / 2) && maxRank == Double(n - 1), "rank \(r): scalar allreduce gave \(total), \(maxRank)")

            var joined = "null"
            if dynamic {
                joined = String(try dynamicJoin(world))
            }
            try world.barrier()
            let line = #"{"rank":\#(r),"size":\#(n),"allreduce":\#(jsonArray(reduced)),"allgatherv":\#(jsonArray(gathered.values)),"# +
                #""broadcast":"\#(String(decoding: message, as: UTF8.self))","sum":\#(total),"thread_level":"\#(level)","joined_size":\#(joined)}"#
            print(line)
            fflush(nil)
            try MPI.finalize()
        }

        /// The last rank plays a worker that starts late: the others open a port, send it over
        /// (here by broadcast; in production via Redis), accept; the late rank connects; both
        /// sides merge. Returns the merged communicator's size (must equal the world's).
        private func dynamicJoin(_ world: Communicator) throws -> Int {
            let late = world.rank == world.size - 1
            let group = try world.split(color: late ? 1 : 0, key: Int32(world.rank))
            let port = world.rank == 0 ? try MPI.openPort() : ""
            let portName = String(decoding: try world.broadcast(bytes: Array(port.utf8), root: 0), as: UTF8.self)
            let inter = late ? try group.connect(port: portName) : try group.accept(port: portName)
            let merged = try inter.merge(high: late)
            var one: [Float] = [1]
            try merged.allreduceSum(&one)
            try require(Int(one[0]) == merged.size && merged.size == world.size, "rank \(world.rank): merged size \(merged.size), allreduce \(one)")
            try require(late ? merged.rank == world.size - 1 : merged.rank == world.rank, "rank \(world.rank): merged rank \(merged.rank)")
            let size = merged.size
            try merged.free(); try inter.free(); try group.free()
            if world.rank == 0 { try MPI.closePort(port) }
            return size
        }
    }
}

// MARK: - kafka

extension SelfTest {
    struct KafkaCheck: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kafka",
            abstract: "Produce keyed messages and read them back by explicit partition assignment.",
            discussion: """
                Without --bootstrap/--bootstrap-file an in-process mock cluster (librdkafka's) is \
                started, so the check needs nothing running. With one, the topic must already exist \
                on that cluster (or be auto-created); the settings file's kafka.client/producer/consumer \
                properties and -X apply either way.
                """)

        @OptionGroup var settings: SettingsOptions

        @OptionGroup(title: "Kafka") var kafka: KafkaOptions

        @Option(help: "Topic to use.")
        var topic = "streamrec-selftest"

        @Option(help: "Number of messages to produce.")
        var messages = 100

        func run() throws {
            let file = try settings.load()
            var mock: MockKafkaCluster? = nil
            let servers: String
            if kafka.bootstrapGiven {
                servers = try kafka.resolve(file, role: .producer).bootstrap.value
            } else {
                let cluster = try MockKafkaCluster(brokers: 3)
                try cluster.createTopic(topic, partitions: 4, replicationFactor: 1)
                servers = cluster.bootstrapServers
                mock = cluster
            }
            defer { mock?.destroy() }
            let producerConfig = KafkaConfig(bootstrapServers: servers, try kafka.properties(file, role: .producer))
            let consumerConfig = KafkaConfig(bootstrapServers: servers, try kafka.properties(file, role: .consumer))
            let runID = UUID().uuidString.prefix(8)

            let producer = try KafkaProducer(config: producerConfig)
            let partitions = try producer.partitionCount(topic: topic)
            var before: [Int32: Int64] = [:]
            let consumer = try KafkaConsumer(config: consumerConfig)
            for p in 0 ..< Int32(partitions) { before[p] = try consumer.watermarks(topic: topic, partition: p).high }
            for i in 0 ..< messages {
                try producer.produce(topic: topic, key: "\(runID)-\(i)", value: "value-\(i)")
            }
            try producer.flush(timeout: .seconds(30))
            let stats = producer.deliveryStats
            try require(stats.succeeded == messages && stats.failed == 0,
                        "delivery: \(stats.succeeded) ok, \(stats.failed) failed\(stats.firstError.map { ": \($0)" } ?? "")")

            try consumer.assign((0 ..< Int32(partitions)).map { KafkaAssignment(topic: topic, partition: $0, offset: before[$0]!) })
            var seen: [String: String] = [:]
            let deadline = ContinuousClock.now + .seconds(30)
            while seen.count < messages && ContinuousClock.now < deadline {
                let batch = try consumer.poll(maxMessages: 500, timeout: .milliseconds(200))
                if let e = batch.errors.first { throw SelfTestFailure("consume: \(e.error)") }
                for m in batch.messages {
                    let key = String(decoding: m.key ?? [], as: UTF8.self)
                    guard key.hasPrefix("\(runID)-") else { continue }
                    try require(seen[key] == nil, "message \(key) delivered twice")
                    seen[key] = String(decoding: m.value, as: UTF8.self)
                }
            }
            try require(seen.count == messages, "consumed \(seen.count) of \(messages) messages within 30 s")
            for (k, v) in seen { try require(v == "value-" + k.split(separator: "-").last!, "key \(k) has value \(v)") }
            var high: Int64 = 0
            for p in 0 ..< Int32(partitions) { high += try consumer.watermarks(topic: topic, partition: p).high - before[p]! }
            try require(high == Int64(messages), "watermarks grew by \(high), expected \(messages)")
            print(#"{"kafka":"ok","bootstrap":"\#(servers)","topic":"\#(topic)","partitions":\#(partitions),"messages":\#(messages)}"#)
        }
    }
}

// MARK: - redis

extension SelfTest {
    struct RedisCheck: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "redis",
            abstract: "Round-trip binary values, counters, a pipeline and a stream through Redis.",
            discussion: "Uses keys under PREFIX:selftest:<random> and deletes them afterwards.")

        @OptionGroup var settings: SettingsOptions

        @OptionGroup(title: "Redis") var store: RedisOptions

        func run() throws {
            let resolved = try store.resolve(settings.load())
            let redis = resolved.address.value
            let conn = try RedisConnection(address: redis)
            let ns = "\(resolved.prefix.value):selftest:\(UUID().uuidString.prefix(8))"
            defer { _ = try? conn.command(["DEL", "\(ns):bin", "\(ns):n", "\(ns):stream", "\(ns):a", "\(ns):b"]) }

            let binary: [UInt8] = [0, 1, 2, 255, 0, 10, 13]
            try conn.command(bytes: [Array("SET".utf8), Array("\(ns):bin".utf8), binary])
            try require(try conn.command(["GET", "\(ns):bin"]).bytes == binary, "binary GET mismatch")
            try conn.command(["INCR", "\(ns):n"])
            try require(try conn.command(["INCR", "\(ns):n"]).integer == 2, "INCR mismatch")
            let replies = try conn.pipeline([["SET", "\(ns):a", "1"], ["SET", "\(ns):b", "2"], ["MGET", "\(ns):a", "\(ns):b"]])
            try require(replies.last?.elements?.compactMap(\.text) == ["1", "2"], "pipeline gave \(replies)")
            let id = try conn.command(["XADD", "\(ns):stream", "*", "f", "v"]).text ?? ""
            let range = try conn.command(["XRANGE", "\(ns):stream", "-", "+"]).elements ?? []
            try require(range.first?.elements?.first?.text == id, "XRANGE did not return \(id)")
            print(#"{"redis":"ok","address":"\#(redis)"}"#)
        }
    }
}
