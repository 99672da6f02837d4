using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Globalization;
using System.Reflection;
using BenchmarkDotNet.Attributes;

namespace Dynamo.Benchmarks;

/// <summary>
/// Objects allocated per operation, which MemoryDiagnoser does not count (it gives bytes):
/// <c>-- --objects FILTER</c> runs every [Benchmark] method of the classes whose name contains FILTER, with
/// every combination of their [Params], for about two seconds each, in a child process started with the
/// runtime's allocation events on (EventPipe from startup, so that every allocation takes the path that
/// reports it), and prints objects and bytes per operation, all threads counted. The runtime reports
/// allocations in aggregated samples per type; over the hundreds of thousands of operations of a run the
/// samples cut at the window's edges are a few hundredths of an object per operation.
/// </summary>
internal static class ObjectCounts
{
    private const string ChildVariable = "DYNAMO_OBJECT_COUNTS_CHILD";

    public static int Run(string filter)
    {
        if (Environment.GetEnvironmentVariable(ChildVariable) is null)
        {
            string trace = Path.Combine(Path.GetTempPath(), $"dynamo-object-counts-{Environment.ProcessId}.nettrace");
            var start = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
            foreach (string arg in Environment.GetCommandLineArgs().Skip(Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal) ? 0 : 1))
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment[ChildVariable] = "1";
            start.Environment["DOTNET_EnableEventPipe"] = "1";
            start.Environment["DOTNET_EventPipeOutputPath"] = trace;
            start.Environment["DOTNET_EventPipeConfig"] = "Microsoft-Windows-DotNETRuntime:0x200000:5";
            using Process child = Process.Start(start)!;
            child.WaitForExit();
            File.Delete(trace);
            return child.ExitCode;
        }

        using var counter = new AllocationListener();
        Console.WriteLine($"| benchmark | params | objects/op | bytes/op | ops |");
        Console.WriteLine($"| --- | --- | ---: | ---: | ---: |");
        foreach (Type type in typeof(ObjectCounts).Assembly.GetTypes().Where(t => t.Name.Contains(filter, StringComparison.Ordinal) && t.GetMethods().Any(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null)).OrderBy(t => t.Name))
        {
            PropertyInfo[] parameters = [.. type.GetProperties().Where(p => p.GetCustomAttribute<ParamsAttribute>() is not null)];
            foreach (object?[] values in Combinations(parameters.Select(p => p.GetCustomAttribute<ParamsAttribute>()!.Values).ToArray()))
            {
                foreach (MethodInfo method in type.GetMethods().Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null))
                {
                    object bench = Activator.CreateInstance(type)!;
                    for (int i = 0; i < parameters.Length; i++)
                    {
                        parameters[i].SetValue(bench, values[i]);
                    }

                    Invoke<GlobalSetupAttribute>(bench);
                    int perInvoke = method.GetCustomAttribute<BenchmarkAttribute>()!.OperationsPerInvoke;
                    void Call()
                    {
                        if (method.Invoke(bench, null) is Task task)
                        {
                            task.GetAwaiter().GetResult();
                        }
                    }

                    var warm = Stopwatch.StartNew();
                    while (warm.Elapsed < TimeSpan.FromSeconds(0.5))
                    {
                        Call();
                    }

                    long invocations = 0;
                    var clock = Stopwatch.StartNew();
                    (long objects, long bytes) = counter.Count(() =>
                    {
                        while (clock.Elapsed < TimeSpan.FromSeconds(2))
                        {
                            Call();
                            invocations++;
                        }
                    });
                    Invoke<GlobalCleanupAttribute>(bench);
                    long ops = invocations * perInvoke;
                    string shown = string.Join(", ", parameters.Select((p, i) => $"{p.Name}={values[i]}"));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {type.Name}.{method.Name} | {shown} | {(double)objects / ops:F2} | {(double)bytes / ops:F0} | {ops} |"));
                }
            }
        }

        return 0;
    }

    private static void Invoke<TAttribute>(object bench)
        where TAttribute : Attribute
    {
        foreach (MethodInfo m in bench.GetType().GetMethods().Where(m => m.GetCustomAttribute<TAttribute>() is not null))
        {
            m.Invoke(bench, null);
        }
    }

    private static IEnumerable<object?[]> Combinations(object?[][] values)
    {
        if (values.Length == 0)
        {
            yield return [];
            yield break;
        }

        foreach (object? first in values[0])
        {
            foreach (object?[] rest in Combinations(values[1..]))
            {
                yield return [first, .. rest];
            }
        }
    }

    /// <summary>Sums the runtime's sampled allocation events (each carries the objects and bytes of its type since the last one) by their time stamps.</summary>
    private sealed class AllocationListener : EventListener
    {
        private long _objects;
        private long _bytes;
        private long _from = long.MaxValue;
        private long _to = long.MaxValue;

        public (long Objects, long Bytes) Count(Action run)
        {
            Interlocked.Exchange(ref _objects, 0);
            Interlocked.Exchange(ref _bytes, 0);
            Volatile.Write(ref _to, long.MaxValue);
            Volatile.Write(ref _from, DateTime.UtcNow.Ticks);
            run();
            Volatile.Write(ref _to, DateTime.UtcNow.Ticks);
            Thread.Sleep(1500); // the events reach the listener a little later
            Volatile.Write(ref _from, long.MaxValue);
            return (Interlocked.Read(ref _objects), Interlocked.Read(ref _bytes));
        }

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
            {
                EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x200000);
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            long at = eventData.TimeStamp.ToUniversalTime().Ticks;
            if (eventData.EventName?.StartsWith("GCSampledObjectAllocation", StringComparison.Ordinal) == true
                && at >= Volatile.Read(ref _from) && at <= Volatile.Read(ref _to) && eventData.Payload is { Count: >= 4 } payload)
            {
                Interlocked.Add(ref _objects, Convert.ToInt64(payload[2], CultureInfo.InvariantCulture));
                Interlocked.Add(ref _bytes, Convert.ToInt64(payload[3], CultureInfo.InvariantCulture));
            }
        }
    }
}
