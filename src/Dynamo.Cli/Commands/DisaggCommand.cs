using System.CommandLine;
using System.Text;
using Dynamo.Components.Registry;
using Dynamo.Llm.Disaggregation;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo disagg --model NAME [--conditional-disagg B] [--max-local-prefill-length N] [--max-prefill-queue-size N]</c>:
/// shows a model's disaggregation settings in the discovery store and changes the ones given; every router
/// applies them from its next request, no restart.
/// </summary>
internal static class DisaggCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "--served-model-name") { Description = "The served model name", Required = true };
        var ns = new Option<string>("--namespace") { Description = "Runtime namespace", DefaultValueFactory = _ => "dynamo" };
        var conditional = new Option<bool?>("--conditional-disagg") { Description = "true: prefill remotely by the thresholds; false: always (while prefill workers exist)" };
        var maxLocal = new Option<int?>("--max-local-prefill-length") { Description = "Prompts whose uncached part is at most this many tokens prefill on their decode worker" };
        var maxQueue = new Option<int?>("--max-prefill-queue-size") { Description = "Prefill remotely only while fewer requests wait at the prefill workers" };
        var command = new Command("disagg", "Show or change a model's disaggregation thresholds at run time (in etcd; ETCD_ENDPOINTS)")
        {
            model, ns, conditional, maxLocal, maxQueue,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(
            parse.GetValue(ns)!, parse.GetValue(model)!, parse.GetValue(conditional), parse.GetValue(maxLocal), parse.GetValue(maxQueue), RuntimeConnection.FromEnvironment(), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string ns, string model, bool? conditional, int? maxLocal, int? maxQueue, RuntimeOptions runtimeOptions, CancellationToken cancellationToken)
    {
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, cancellationToken);
        DisaggregationSettings current = await DisaggregationSettingsStore.GetAsync(runtime.Discovery, ns, model, cancellationToken) ?? DisaggregationSettings.Default;
        if (conditional is not null || maxLocal is not null || maxQueue is not null)
        {
            DisaggregationSettings next = current with
            {
                ConditionalDisagg = conditional ?? current.ConditionalDisagg,
                MaxLocalPrefillLength = maxLocal ?? current.MaxLocalPrefillLength,
                MaxPrefillQueueSize = maxQueue ?? current.MaxPrefillQueueSize,
            };
            try
            {
                next.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException(e.Message);
            }

            await DisaggregationSettingsStore.PutAsync(runtime.Discovery, ns, model, next, cancellationToken);
            current = next;
        }

        Console.WriteLine(Encoding.UTF8.GetString(current.ToJsonUtf8()));
        return 0;
    }
}
