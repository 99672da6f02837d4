using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Dynamo.Cli.Commands;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.Workers;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Cli.Components;

/// <summary>
/// The processes of a tensor- or pipeline-parallel worker: the command a user starts on a node runs that node's first
/// rank and starts the node's other ranks as processes of the same command (with the hidden --tp-rank); every rank loads
/// its shard (or its stage's layers), meets the others at --dist-init-addr (agreeing on the model's fingerprint and the shard layout), and then
/// rank 0 serves as the worker while the others follow its forward passes until it stops or one of them is lost.
/// </summary>
internal static class TensorParallelRanks
{
    /// <summary>The init address to use: the one given, or on a single node a free port of this host.</summary>
    public static string ResolveInitAddress(TensorParallelSettings tp)
    {
        if (tp.InitAddress is { } given)
        {
            return given;
        }

        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}");
    }

    /// <summary>
    /// Checks that <paramref name="model"/> splits that many ways, then starts this node's other ranks as `worker` processes of this executable (model, ranks, init address, threads and
    /// pass size: what a follower needs; no NATS or etcd). They write to this process's standard output and error.
    /// </summary>
    public static List<Process> StartLocalRanks(WorkerSettings settings, ModelConfig model, string initAddress, TextWriter log)
    {
        TensorParallelSettings tp = settings.TensorParallel;
        try
        {
            // Said once, here, rather than by every rank started for nothing.
            if (tp.Pipeline)
            {
                PipelineStageWeights.Check(model, tp.Size);
            }
            else
            {
                ShardedWeights.Check(model, tp.Size);
            }
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        string[] self = BenchDisaggCommand.SelfCommand();
        var started = new List<Process>();
        try
        {
            foreach (int rank in tp.OtherLocalRanks)
            {
                var info = new ProcessStartInfo(self[0]) { UseShellExecute = false };
                foreach (string a in self.Skip(1).Concat(FollowerArguments(settings, initAddress, rank)))
                {
                    info.ArgumentList.Add(a);
                }

                Process process = Process.Start(info) ?? throw new InvalidOperationException($"could not start rank {rank}");
                started.Add(process);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker: rank {tp.Rank}: started rank {rank} of {tp.Size} (pid {process.Id})"));
            }
        }
        catch
        {
            Kill(started);
            throw;
        }

        return started;
    }

    /// <summary>The `worker` arguments of rank <paramref name="rank"/>, a follower of this node.</summary>
    internal static IEnumerable<string> FollowerArguments(WorkerSettings settings, string initAddress, int rank)
    {
        TensorParallelSettings tp = settings.TensorParallel;
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        yield return "worker";
        yield return "--model";
        yield return settings.ModelPath ?? throw new CliUsageException("--model is required for the built-in engine");
        yield return tp.SizeFlag;
        yield return I(tp.Size);
        yield return "--nnodes";
        yield return I(tp.Nodes);
        yield return "--node-rank";
        yield return I(tp.NodeRank);
        yield return "--dist-init-addr";
        yield return initAddress;
        yield return "--tp-rank";
        yield return I(rank);
        yield return "--tp-transport";
        yield return tp.Transport;
        yield return "--dist-timeout";
        yield return tp.Timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        yield return "--rank-timeout";
        yield return tp.RankTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        yield return "--threads";
        yield return I(settings.Threads);
        yield return "--max-num-batched-tokens";
        yield return I(settings.Engine.MaxNumBatchedTokens);
    }

    /// <summary>Kills rank processes at once (the worker failed to start).</summary>
    public static void Kill(List<Process> ranks)
    {
        foreach (Process p in ranks)
        {
            try
            {
                p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }
    }

    /// <summary>
    /// Loads this rank's part of the model at <paramref name="modelPath"/> (its <see cref="ShardedWeights"/>, or its
    /// <see cref="PipelineStageWeights"/> with <see cref="TensorParallelSettings.Pipeline"/>) and joins the group; the
    /// caller owns both. Throws <see cref="CliUsageException"/> (one line) when the model cannot be split or the ranks disagree.
    /// </summary>
    public static async Task<(IModelWeights Part, ICollectiveGroup Group)> LoadAndJoinAsync(
        TensorParallelSettings tp, string initAddress, string modelPath, IModelWeights full, TextWriter log, CancellationToken cancellationToken)
    {
        IModelWeights part;
        try
        {
            part = tp.Pipeline ? PipelineStageWeights.Create(full, tp.Rank, tp.Size) : ShardedWeights.Create(full, tp.Rank, tp.Size);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        try
        {
            string fingerprint = ModelFingerprint.Of(modelPath);
            string layout = part is PipelineStageWeights s ? s.Layout : ((ShardedWeights)part).Layout;
            ICollectiveGroup group = await CollectiveGroups.JoinAsync(tp, initAddress, fingerprint, layout, cancellationToken).ConfigureAwait(false);
            if (part is PipelineStageWeights stage)
            {
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"worker: rank {tp.Rank} of {tp.Size} joined at {initAddress}: {layout}; this stage runs layers {stage.FirstLayer}-{stage.FirstLayer + stage.LayerCount - 1}{(stage.IsFirst ? " and the embedding" : "")}{(stage.IsLast ? " and the output" : "")}, weights {stage.ViewBytes / 1e6:F1} MB mapped"));
                return (part, group);
            }

            var shard = (ShardedWeights)part;
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"worker: rank {tp.Rank} of {tp.Size} joined at {initAddress}: {shard.Layout}; weights {shard.ViewBytes / 1e6:F1} MB mapped (its rows) + {shard.CopiedBytes / 1e6:F1} MB copied (its columns)"));
            if (shard.Converted.Count > 0)
            {
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"worker: rank {tp.Rank}: {shard.Converted.Count} tensors are split inside their quantization blocks; this rank keeps their columns as F32: {string.Join(", ", shard.Converted.Take(3))}{(shard.Converted.Count > 3 ? ", ..." : "")}"));
            }

            return (part, group);
        }
        catch
        {
            part.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A rank other than 0 (and the first of its node: the others of the node it starts): loads its shard, joins, and runs rank 0's forward passes until rank 0 stops (exit 0) or
    /// the group breaks (one line naming the lost rank, exit 1). Needs no NATS or etcd.
    /// </summary>
    public static async Task<int> FollowAsync(WorkerSettings settings, string initAddress, TextWriter log, CancellationToken cancellationToken)
    {
        TensorParallelSettings tp = settings.TensorParallel;
        string path = settings.ModelPath ?? throw new CliUsageException("--model is required for the built-in engine");
        KernelThreads.Count = settings.Threads;
        IModelWeights full = ModelLoader.Load(path);
        List<Process> ranks;
        IModelWeights shard;
        ICollectiveGroup group;
        try
        {
            ranks = StartLocalRanks(settings, full.Config, initAddress, log);
        }
        catch
        {
            full.Dispose();
            throw;
        }

        try
        {
            (shard, group) = await LoadAndJoinAsync(tp, initAddress, path, full, log, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Kill(ranks);
            throw;
        }

        try
        {
            return await FollowAsync(tp, shard, group, MaxBatch(settings), log, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await WaitForAsync(ranks, log).ConfigureAwait(false);
        }
    }

    private static async Task<int> FollowAsync(TensorParallelSettings tp, IModelWeights shard, ICollectiveGroup group, int maxBatch, TextWriter log, CancellationToken cancellationToken)
    {
        using (group)
        {
            // Rank 0 of a prefill worker has this rank push its own KV heads to the decode worker (PushKv plans).
            using var model = new Transformer(shard, maxBatch, group) { KvSender = new KvTransferClient(), KvPushTimeout = KvPushTimeout(tp) };
            var done = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    model.Follow();
                    done.TrySetResult(null);
                }
                catch (Exception e)
                {
                    done.TrySetResult(e);
                }
            })
            { IsBackground = true, Name = "dynamo-tp-follower" };
            thread.Start();
            Exception? failure;
            try
            {
                failure = await done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker: rank {tp.Rank}: stopped by a signal; rank 0 loses this rank and stops serving"));
                return 0;
            }

            if (failure is null)
            {
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker: rank {tp.Rank}: rank 0 stopped; exiting"));
                return 0;
            }

            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker: rank {tp.Rank}: {failure.Message}"));
            return 1;
        }
    }

    /// <summary>
    /// Waits for the ranks this process started (they stop when rank 0 does, or when the group breaks); a rank still
    /// running after the group's timeout is killed, so that nothing is left behind.
    /// </summary>
    public static async Task WaitForAsync(List<Process> ranks, TextWriter log)
    {
        foreach (Process p in ranks)
        {
            using (p)
            {
                using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try
                {
                    await p.WaitForExitAsync(bound.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    log.WriteLine($"worker: rank process {p.Id} did not stop within 30 s; killing it");
                    p.Kill(entireProcessTree: true);
                }
            }
        }
    }

    /// <summary>
    /// How long a rank's push of its KV part may take: half the rank timeout, so that the ranks waiting for its result
    /// inside a collective never take it for lost (a slow decode worker fails the transfer, not the group).
    /// </summary>
    public static TimeSpan KvPushTimeout(TensorParallelSettings tp) => tp.RankTimeout / 2;

    /// <summary>Tokens of one forward pass: the same on every rank (they run the same passes).</summary>
    public static int MaxBatch(WorkerSettings settings) => Math.Min(settings.Engine.MaxNumBatchedTokens, 512);
}
