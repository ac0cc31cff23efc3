// The log handler every command bootstraps (text and json) and the router of librdkafka's
// messages that summarises a broker outage.
import Foundation
import Logging
import Observability
import Streaming
import Testing
import TestSupport

@Suite("log lines: text and json")
struct LogHandlerTests {
    let date = Date(timeIntervalSince1970: 1_796_225_204.263)

    @Test("text: info lines are the message as it is (the seed's training line unchanged); other levels say their level; the tag prefixes; call fields follow")
    func text() {
        let seed = "epoch: 1, step: 20, wide_loss: 0.512345, deep_loss: 0.523456"
        #expect(StreamRecLogHandler.render(format: .text, date: date, level: .info, component: "train", message: seed,
                                           context: ["rank": "0"]) == seed + "\n")
        #expect(StreamRecLogHandler.render(format: .text, date: date, level: .warning, component: "featurize", message: "PAUSED",
                                           context: [LogKey.tag: "featurize[0/2]", "worker": "w1"], fields: ["partition": "3"])
                == "warning: featurize[0/2] PAUSED partition=3\n")
    }

    @Test("json: one object per line with time, level, component, context and fields; numbers stay numbers; the text tag is left out")
    func json() throws {
        let line = StreamRecLogHandler.render(format: .json, date: date, level: .error, component: "featurize",
                                              message: "RETENTION GAP \"x\"\nsecond line",
                                              context: [LogKey.tag: "featurize[1]", "worker": "w@h:1", "rank": "2"],
                                              fields: ["lost": .stringConvertible(50), "ratio": .stringConvertible(0.5)])
        #expect(line.hasSuffix("}\n") && line.dropLast().contains("\n") == false, "one line: \(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["time"] as? String == "2026-12-02T15:26:44.263Z")
        #expect(object["level"] as? String == "error")
        #expect(object["component"] as? String == "featurize")
        #expect(object["message"] as? String == "RETENTION GAP \"x\"\nsecond line")
        #expect(object["worker"] as? String == "w@h:1")
        #expect(object["rank"] as? Int == 2)
        #expect(object["lost"] as? Int == 50)
        #expect(object["ratio"] as? Double == 0.5)
        #expect(object[LogKey.tag] == nil)
    }

    @Test("a captured logger keeps lines from several threads whole")
    func captured() {
        let log = CapturedLog()
        let logger = log.logger("x").tagged("x[1]")
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for j in 0 ..< 50 { logger.info("line \(i) \(j)") }
        }
        #expect(log.lines.count == 400)
        #expect(log.lines.allSatisfy { $0.hasPrefix("x[1] line ") })
    }
}

@Suite("librdkafka's messages: an outage is summarised")
struct KafkaLogTests {
    @Test("100 connection errors: one line when it starts, one with the count when quiet; other messages pass through with their level")
    func outage() {
        let router = KafkaLog()
        let log = CapturedLog()
        router.install(logger: log.logger("kafka"))
        let t0 = ContinuousClock.now
        for i in 0 ..< 100 {
            router.receive(level: 3, facility: "FAIL", message: "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
                           now: t0 + .milliseconds(20 * i))
        }
        #expect(log.lines.count == 1, "\(log.lines)")
        #expect(log.lines.first?.hasPrefix("warning: Kafka connection trouble: 127.0.0.1:9092/1: Connect to") == true)
        // Not quiet yet: nothing ends.
        #expect(!router.endOutageIfQuiet(now: t0 + .milliseconds(2_000)))
        #expect(router.endOutageIfQuiet(now: t0 + .milliseconds(1_980) + KafkaLog.quietPeriod))
        #expect(log.lines.count == 2)
        #expect(log.lines.last?.contains("Kafka connection errors stopped: 100 in 2.0 s (99 not printed)") == true, "\(log.lines)")
        // A new outage is reported again, once.
        router.receive(level: 3, facility: "FAIL", message: "Disconnected", now: t0 + .seconds(60))
        router.receive(level: 3, facility: "FAIL", message: "Disconnected", now: t0 + .seconds(61))
        #expect(log.lines.count == 3)
        #expect(router.outages == 2)
        // Stopping during an outage still says how many there were.
        router.finish()
        #expect(log.lines.last == "warning: Kafka connection errors: 2 in 1.0 s (1 not printed), still failing when the process stopped",
                "\(log.lines)")
        router.finish()
        #expect(log.lines.count == 4, "said once")
        // Something else keeps its level and text.
        router.receive(level: 4, facility: "CONFWARN", message: "Configuration property x is a producer property")
        #expect(log.lines.last == "warning: Configuration property x is a producer property facility=CONFWARN")
    }
}
