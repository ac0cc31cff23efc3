import ArgumentParser

@main
struct StreamRec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streamrec",
        abstract: "Distributed online-learning training cluster: Kafka → features → MPI trainers → serving.",
        subcommands: [Gen.self, Stats.self, Featurize.self, Status.self, FeaturizeBench.self, Train.self, Eval.self, Ckpt.self, Bench.self, SelfTest.self])
}
