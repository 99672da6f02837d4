using System.Text.Json;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.ChatTemplates;

/// <summary>
/// Every row of shared/oracle/chat_templates.jsonl: the real templates (Qwen3, Llama 3, Llama 2,
/// Mistral v0.1/v0.2, ChatML, zephyr) rendered by Python jinja2 as transformers configures it.
/// </summary>
public class ChatTemplateOracleTests
{
    public static TheoryData<string> Rows()
    {
        var data = new TheoryData<string>();
        if (!SharedData.Available)
        {
            data.Add("(shared data absent)");
            return data;
        }

        foreach (string line in File.ReadLines(SharedData.Path("oracle", "chat_templates.jsonl")))
        {
            if (line.Trim().Length > 0)
            {
                using JsonDocument doc = JsonDocument.Parse(line);
                data.Add($"{doc.RootElement.GetProperty("template_name").GetString()}/{doc.RootElement.GetProperty("conversation").GetString()}");
            }
        }

        return data;
    }

    [SharedTheory]
    [MemberData(nameof(Rows))]
    public void Render_OracleRow_MatchesPythonJinja2(string row)
    {
        JsonElement r = FindRow(row);
        ChatTemplate template = ChatTemplate.Parse(r.GetProperty("template").GetString()!);
        var context = (Dictionary<string, object?>)ChatTemplateValue.FromJson(r.GetProperty("context"))!;
        context.TryAdd("tools", null);
        context.TryAdd("documents", null);
        JsonElement expected = r.GetProperty("rendered_python_jinja2");
        if (expected.ValueKind == JsonValueKind.Null)
        {
            ChatTemplateException e = Assert.ThrowsAny<ChatTemplateException>(() => template.Render(context));
            Assert.Equal(r.GetProperty("error_python_jinja2").GetString(), e.Message);
        }
        else
        {
            Assert.Equal(expected.GetString(), template.Render(context));
        }
    }

    private static JsonElement FindRow(string row)
    {
        foreach (string line in File.ReadLines(SharedData.Path("oracle", "chat_templates.jsonl")))
        {
            JsonElement e = JsonDocument.Parse(line).RootElement;
            if ($"{e.GetProperty("template_name").GetString()}/{e.GetProperty("conversation").GetString()}" == row)
            {
                return e;
            }
        }

        throw new InvalidOperationException($"row {row} not found");
    }
}
