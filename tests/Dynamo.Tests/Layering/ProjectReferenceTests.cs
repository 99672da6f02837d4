using System.Reflection;

namespace Dynamo.Tests.Layering;

/// <summary>The dependency direction of ../shared/STYLE.md, checked on the built assemblies.</summary>
public class ProjectReferenceTests
{
    private static string[] OurReferences(Assembly assembly) =>
        assembly.GetReferencedAssemblies()
            .Select(a => a.Name!)
            .Where(n => n.StartsWith("Dynamo.", StringComparison.Ordinal) || n == "dynamo")
            .Order(StringComparer.Ordinal)
            .ToArray();

    [Fact]
    public void Runtime_ReferencesNoProjectOfOurs()
    {
        Assert.Empty(OurReferences(typeof(Dynamo.Runtime.DistributedRuntime).Assembly));
    }

    [Fact]
    public void Llm_ReferencesNoProjectOfOurs()
    {
        Assert.Empty(OurReferences(typeof(Dynamo.Llm.Tokenizers.ITokenizer).Assembly));
    }

    [Fact]
    public void Components_ReferenceOnlyLlmAndRuntime()
    {
        Assert.Equal(["Dynamo.Llm", "Dynamo.Runtime"], OurReferences(typeof(Dynamo.Components.Workers.EngineWorker).Assembly));
    }

    [Fact]
    public void Frontend_ReferencesOnlyComponentsLlmAndRuntime()
    {
        // Llm and Runtime come through Components; the frontend names their types (DistributedRuntime) directly.
        Assert.Equal(["Dynamo.Components", "Dynamo.Llm", "Dynamo.Runtime"], OurReferences(typeof(Dynamo.Frontend.FrontendServer).Assembly));
    }

    [Fact]
    public void Load_ReferencesOnlyComponentsEngineFrontendLlmMockerAndRuntime()
    {
        // The bench commands' measuring parts drive the engine, frontends and runtimes; the worker component comes
        // from the CLI, which composes it (BenchWorker). The simulator (Simulation/) runs mocker engines itself, step
        // by step on a virtual clock, with no worker around them: the one reason Load sees the mocker.
        Assert.Equal(["Dynamo.Components", "Dynamo.Engine", "Dynamo.Frontend", "Dynamo.Llm", "Dynamo.Mocker", "Dynamo.Runtime"], OurReferences(typeof(Dynamo.Load.LoadRunner).Assembly));
    }

    [Theory]
    [InlineData(typeof(Dynamo.Runtime.DistributedRuntime))]
    [InlineData(typeof(Dynamo.Llm.Tokenizers.ITokenizer))]
    [InlineData(typeof(Dynamo.Components.Workers.EngineWorker))]
    [InlineData(typeof(Dynamo.Engine.Inference.Transformer))]
    [InlineData(typeof(Dynamo.Mocker.MockerEngine))]
    [InlineData(typeof(Dynamo.Frontend.FrontendServer))]
    public void Load_IsReferencedByNoLibrary(Type type)
    {
        // Only the CLI (the composition root), the tests and the benchmarks may use the load tools.
        Assert.DoesNotContain("Dynamo.Load", OurReferences(type.Assembly));
    }

    [Theory]
    [InlineData(typeof(Dynamo.Llm.Tokenizers.ITokenizer))]
    [InlineData(typeof(Dynamo.Engine.Inference.Transformer))]
    [InlineData(typeof(Dynamo.Mocker.MockerEngine))]
    public void ModelFreeAndComputeProjects_DoNotSeeTheNetwork(Type type)
    {
        string[] references = type.Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToArray();
        Assert.DoesNotContain(references, n => n.StartsWith("NATS", StringComparison.Ordinal) || n.StartsWith("dotnet-etcd", StringComparison.Ordinal)
            || n.StartsWith("Grpc", StringComparison.Ordinal) || n == "Dynamo.Runtime" || n == "Dynamo.Components");
    }

    [Fact]
    public void Engine_ReferencesOnlyLlm()
    {
        Assert.Equal(["Dynamo.Llm"], OurReferences(typeof(Dynamo.Engine.Inference.Transformer).Assembly));
    }

    [Fact]
    public void Mocker_ReferencesOnlyLlm()
    {
        Assert.Equal(["Dynamo.Llm"], OurReferences(typeof(Dynamo.Mocker.MockerEngine).Assembly));
    }

    [Fact]
    public void Engine_IsTheOnlyProjectWithUnsafeCode()
    {
        static bool HasUnverifiableCode(Assembly a) =>
            a.GetCustomAttributes<System.Security.UnverifiableCodeAttribute>().Any()
            || a.GetModules().Any(m => m.GetCustomAttributes<System.Security.UnverifiableCodeAttribute>().Any());

        Assert.True(HasUnverifiableCode(typeof(Dynamo.Engine.Inference.Transformer).Assembly));
        Assert.False(HasUnverifiableCode(typeof(Dynamo.Llm.Tokenizers.ITokenizer).Assembly));
        Assert.False(HasUnverifiableCode(typeof(Dynamo.Mocker.MockerEngine).Assembly));
    }
}
