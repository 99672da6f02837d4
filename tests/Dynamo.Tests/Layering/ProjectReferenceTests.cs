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
    public void Llm_ReferencesNoEngineOrCli()
    {
        Assert.Empty(OurReferences(typeof(Dynamo.Llm.Tokenizers.ITokenizer).Assembly));
    }

    [Fact]
    public void Engine_ReferencesOnlyLlm()
    {
        Assert.Equal(["Dynamo.Llm"], OurReferences(typeof(Dynamo.Engine.Inference.Transformer).Assembly));
    }

    [Fact]
    public void Engine_IsTheOnlyProjectWithUnsafeCode()
    {
        static bool HasUnverifiableCode(Assembly a) =>
            a.GetCustomAttributes<System.Security.UnverifiableCodeAttribute>().Any()
            || a.GetModules().Any(m => m.GetCustomAttributes<System.Security.UnverifiableCodeAttribute>().Any());

        Assert.True(HasUnverifiableCode(typeof(Dynamo.Engine.Inference.Transformer).Assembly));
        Assert.False(HasUnverifiableCode(typeof(Dynamo.Llm.Tokenizers.ITokenizer).Assembly));
    }
}
