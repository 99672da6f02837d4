using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;

namespace Dynamo.Benchmarks;

internal static class Program
{
    private static int Main(string[] args)
    {
        if (args is ["--objects", .. var rest])
        {
            return ObjectCounts.Run(rest.FirstOrDefault() ?? "");
        }

        // The generated project builds every project of ours without a shared compiler: on a 2-core machine that
        // takes longer than BenchmarkDotNet's default two minutes.
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly)
            .Run(args, ManualConfig.Create(DefaultConfig.Instance).WithBuildTimeout(TimeSpan.FromMinutes(10)));
        return 0;
    }
}
