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
    public void Llm_ReferencesOnlyRuntime()
    {
        Assert.Equal(["Dynamo.Runtime"], OurReferences(typeof(Dynamo.Llm.Tokenizers.ITokenizer).Assembly));
    }

    [Fact]
    public void Frontend_ReferencesOnlyLlmAndRuntime()
    {
        // Runtime is Llm's own dependency; the frontend names its types (DistributedRuntime) directly.
        Assert.Equal(["Dynamo.Llm", "Dynamo.Runtime"], OurReferences(typeof(Dynamo.Frontend.FrontendServer).Assembly));
    }

    [Fact]
    public void Engine_DoesNotSeeNatsOrEtcd()
    {
        string[] references = typeof(Dynamo.Engine.Inference.Transformer).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToArray();
        Assert.DoesNotContain(references, n => n.StartsWith("NATS", StringComparison.Ordinal) || n.StartsWith("dotnet-etcd", StringComparison.Ordinal) || n == "Dynamo.Runtime");
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
