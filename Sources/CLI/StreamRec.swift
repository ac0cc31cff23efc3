import ArgumentParser

@main
struct StreamRec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streamrec",
        abstract: "Distributed online-learning training cluster: Kafka → features → MPI trainers → serving.",
        subcommands: [Gen.self, Stats.self, Broker.self, Produce.self, Featurize.self, Status.self, Popular.self, Train.self, Eval.self,
                      Serve.self, DashboardCommand.self, Supervise.self, Ckpt.self, Bench.self, SelfTest.self])
}
