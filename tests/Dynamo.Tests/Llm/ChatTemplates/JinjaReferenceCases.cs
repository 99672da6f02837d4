namespace Dynamo.Tests.Llm.ChatTemplates;

/// <summary>
/// Fixture data: templates (model templates written from their public text, and feature probes),
/// a JSON context, and the output of Python jinja2 3.1.2 configured as transformers configures it
/// (trim_blocks, lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False)).
/// The expected strings were produced by that renderer, not by this project.
/// </summary>
internal static class JinjaReferenceCases
{
    /// <summary>Name, template, context JSON, expected output.</summary>
    public static TheoryData<string, string, string, string> All => new()
    {
        {
            "Llama2_SystemMultiTurn",
            "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"content\": \" Four. \"}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! How can I help? </s><s>[INST] What is 2+2? [/INST] Four. </s>"
        },
        {
            "Zephyr_SystemMultiTurnGen",
            "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"add_generation_prompt\": true, \"eos_token\": \"</s>\"}",
            "<|system|>\nYou are terse.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello! How can I help?</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n"
        },
        {
            "SmolLm_NoSystemGen",
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"add_generation_prompt\": true}",
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        },
        {
            "SmolLm_SystemNoGen",
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"add_generation_prompt\": false}",
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        },
        {
            "Qwen2_DefaultSystemGen",
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"add_generation_prompt\": true}",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        },
        {
            "MistralV3_NoTools",
            "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n        {{- \"[TOOL_CALLS] [\" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n            {%- endif %}\n            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n            {%- if not loop.last %}\n                {{- \", \" }}\n            {%- else %}\n                {{- \"]\" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n        {%- endif %}\n        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
            "<s>[INST] Hi there[/INST] Hello! How can I help?</s>[INST] You are terse.\n\nWhat is 2+2?[/INST]"
        },
        {
            "MistralV3_Tools",
            "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n        {{- \"[TOOL_CALLS] [\" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n            {%- endif %}\n            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n            {%- if not loop.last %}\n                {{- \", \" }}\n            {%- else %}\n                {{- \"]\" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n        {%- endif %}\n        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"abc123def\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]}, {\"role\": \"tool\", \"tool_call_id\": \"abc123def\", \"content\": \"{\\\"temp\\\": 21}\"}, {\"role\": \"assistant\", \"content\": \"It is 21 degrees.\"}, {\"role\": \"user\", \"content\": \"Thanks\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}, \"days\": {\"type\": \"integer\", \"default\": 1.0}}, \"required\": [\"city\"]}}}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
            "<s>[INST] Weather in Paris?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123def\"}]</s>[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": \"abc123def\"}[/TOOL_RESULTS] It is 21 degrees.</s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}, \"days\": {\"type\": \"integer\", \"default\": 1.0}}, \"required\": [\"city\"]}}}][/AVAILABLE_TOOLS][INST] Thanks[/INST]"
        },
        {
            "Llama31_NoTools",
            "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n\"}}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n            {%- for arg_name, arg_val in tool_call.arguments | items %}\n                {{- arg_name + '=\"' + arg_val + '\"' }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- endif %}\n                {%- endfor %}\n            {{- \")\" }}\n        {%- else  %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n            {{- '\"parameters\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- \"}\" }}\n        {%- endif %}\n        {%- if builtin_tools is defined %}\n            {#- This means we're in ipython mode #}\n            {{- \"<|eom_id|>\" }}\n        {%- else %}\n            {{- \"<|eot_id|>\" }}\n        {%- endif %}\n    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}], \"add_generation_prompt\": true, \"bos_token\": \"<|begin_of_text|>\"}",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        },
        {
            "Llama31_ToolsInUserMessage",
            "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n\"}}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n            {%- for arg_name, arg_val in tool_call.arguments | items %}\n                {{- arg_name + '=\"' + arg_val + '\"' }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- endif %}\n                {%- endfor %}\n            {{- \")\" }}\n        {%- else  %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n            {{- '\"parameters\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- \"}\" }}\n        {%- endif %}\n        {%- if builtin_tools is defined %}\n            {#- This means we're in ipython mode #}\n            {{- \"<|eom_id|>\" }}\n        {%- else %}\n            {{- \"<|eot_id|>\" }}\n        {%- endif %}\n    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"abc123def\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]}, {\"role\": \"tool\", \"tool_call_id\": \"abc123def\", \"content\": \"{\\\"temp\\\": 21}\"}, {\"role\": \"assistant\", \"content\": \"It is 21 degrees.\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}, \"days\": {\"type\": \"integer\", \"default\": 1.0}}, \"required\": [\"city\"]}}}], \"add_generation_prompt\": true, \"bos_token\": \"<|begin_of_text|>\"}",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the weather\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\",\n                    \"description\": \"City name\"\n                },\n                \"days\": {\n                    \"type\": \"integer\",\n                    \"default\": 1.0\n                }\n            },\n            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}\n\nWeather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 21}\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nIt is 21 degrees.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        },
        {
            "Llama31_BuiltinTools",
            "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n\"}}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n            {%- for arg_name, arg_val in tool_call.arguments | items %}\n                {{- arg_name + '=\"' + arg_val + '\"' }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- endif %}\n                {%- endfor %}\n            {{- \")\" }}\n        {%- else  %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n            {{- '\"parameters\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- \"}\" }}\n        {%- endif %}\n        {%- if builtin_tools is defined %}\n            {#- This means we're in ipython mode #}\n            {{- \"<|eom_id|>\" }}\n        {%- else %}\n            {{- \"<|eot_id|>\" }}\n        {%- endif %}\n    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Search it\"}, {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"function\": {\"name\": \"brave_search\", \"arguments\": {\"query\": \"x y\"}}}]}], \"builtin_tools\": [\"brave_search\", \"code_interpreter\"], \"add_generation_prompt\": false, \"bos_token\": \"<|begin_of_text|>\"}",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nTools: brave_search\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSearch it<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>brave_search.call(query=\"x y\")<|eom_id|>"
        },
        {
            "Whitespace_TrimAndLstripBlocks",
            "<ul>\n  {% for x in items %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n",
            "{\"items\": [1, 2]}",
            "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>"
        },
        {
            "Whitespace_DashMarkers",
            "a  \n  {{- x -}}  \n  b {%- if true -%}  c  {%- endif %}\n d",
            "{\"x\": \"X\"}",
            "aXbc d"
        },
        {
            "Whitespace_PlusDisablesLstrip",
            "x\n    {%+ if true %}y{% endif %}\n",
            "{}",
            "x\n    y"
        },
        {
            "Whitespace_CommentTrimmed",
            "a\n  {# note #}\nb {#- c -#}   d",
            "{}",
            "a\nbd"
        },
        {
            "Whitespace_VariableKeepsNewline",
            "{{ 'a' }}\n{{ 'b' }}\n",
            "{}",
            "a\nb"
        },
        {
            "Whitespace_InlineBlockNotLstripped",
            "x  {% if true %}y{% endif %}",
            "{}",
            "x  y"
        },
        {
            "Loop_Variables",
            "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
            "{}",
            "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|"
        },
        {
            "Loop_PrevNextItem",
            "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}",
            "{}",
            "-2;1-3;2-;"
        },
        {
            "Loop_ElseAndFilter",
            "{% for x in xs if x > 1 %}{{ x }}{{ loop.index }}{{ loop.length }},{% else %}empty{% endfor %}|{% for x in [] %}no{% else %}empty{% endfor %}",
            "{\"xs\": [1, 2, 3]}",
            "212,322,|empty"
        },
        {
            "Loop_BreakContinue",
            "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
            "{}",
            "0134"
        },
        {
            "Loop_ScopeDoesNotLeak",
            "{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = i %}{{ x }}|{% endfor %}{{ x }}",
            "{}",
            "00|01|02|0"
        },
        {
            "Loop_NamespaceCarriesState",
            "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}",
            "{}",
            "6 0123"
        },
        {
            "Loop_UnpackItems",
            "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|items %}{{ k }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
            "{\"d\": {\"b\": 1, \"a\": 2}}",
            "b=1;a=2;baba"
        },
        {
            "Set_BlockAndTuple",
            "{% set a, b = 1, 2 %}{% set t %}[{{ a + b }}]{% endset %}{{ t }}{{ t|length }}",
            "{}",
            "[3]3"
        },
        {
            "Macro_DefaultsAndKeywords",
            "{% macro tag(name, cls='x') %}<{{ name }} class={{ cls }}>{% endmacro %}{{ tag('a') }}{{ tag('b', cls='y') }}{{ tag(name='c') }}",
            "{}",
            "<a class=x><b class=y><c class=x>"
        },
        {
            "Print_PythonReprs",
            "{{ none }}|{{ true }}|{{ False }}|{{ 1.0 }}|{{ 2.50 }}|{{ 1e20 }}|{{ 0.00001 }}|{{ 10 / 4 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'it\\'s', 'n': [1]} }}|{{ (1,) }}|{{ 'a' ~ 1 ~ none }}",
            "{}",
            "None|True|False|1.0|2.5|1e+20|1e-05|2.5|3|-4|2|1024|[1, 'a', None, True, 1.5]|{'k': \"it's\", 'n': [1]}|(1,)|a1None"
        },
        {
            "Print_Undefined",
            "[{{ missing }}][{{ d.nokey }}][{{ missing|default('dflt') }}][{{ ''|default('e', true) }}][{{ missing is defined }}][{{ d.nokey is undefined }}][{{ missing|length }}]",
            "{\"d\": {}}",
            "[][][dflt][e][False][True][0]"
        },
        {
            "Expr_Operators",
            "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }} {{ 'k' in {'k':1} }} {{ not true or true }} {{ 1 and 'x' }} {{ 0 or 'y' }} {{ -3|abs }} {{ 'y' if 0 else 'n' }} {{ true == 1 }} {{ 1 == 1.0 }}",
            "{}",
            "7 9 abab [1, 2] True False True True True True x y 3 n True True"
        },
        {
            "Expr_Slicing",
            "{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ xs[-1] }}|{{ xs[1:3] }}|{{ xs[::-1] }}|{{ xs[5] is defined }}|{{ s[0] }}",
            "{\"s\": \"hello\", \"xs\": [1, 2, 3, 4]}",
            "ello|hell|olleh|hlo|4|[2, 3]|[4, 3, 2, 1]|False|h"
        },
        {
            "Expr_StringLiterals",
            "{{ \"a\\tb\\nc\" }}|{{ 'it\\'s' }}|{{ 'x' 'y' }}|{{ '\\u00e9' }}|{{ 'back\\\\slash' }}",
            "{}",
            "a\tb\nc|it's|xy|\u00e9|back\\slash"
        },
        {
            "Expr_DictAndListLiterals",
            "{% set d = {'a': 1, 'b': [1, 2], 'c': {'d': none}} %}{{ d|tojson }}|{{ d.b[1] }}|{{ d['c']['d'] }}|{{ dict(x=1, y='z')|tojson }}",
            "{}",
            "{\"a\": 1, \"b\": [1, 2], \"c\": {\"d\": null}}|2|None|{\"x\": 1, \"y\": \"z\"}"
        },
        {
            "Filters_Strings",
            "{{ '  pad  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'MiXed'|upper }}{{ 'MiXed'|lower }}|{{ 'hello wORLD-foo (bar)'|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'aXbX'|replace('X', '-') }}|{{ 'aXbX'|replace('X', '-', 1) }}|{{ 123|string }}|{{ 'one two  three'|wordcount }}",
            "{}",
            "pad|hi|MIXEDmixed|Hello World-Foo (Bar)|Hello world|a-b-|a-bX|123|3"
        },
        {
            "Filters_Numbers",
            "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 3|float }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 3|round }} {{ 2.1|round(0, 'ceil') }} {{ -2|abs }}",
            "{}",
            "42 4 0 7 3 2.5 3.0 2.0 3.14 3 3.0 2"
        },
        {
            "Filters_Sequences",
            "{{ xs|first }} {{ xs|last }} {{ xs|length }} {{ xs|count }} {{ xs|join(', ') }} {{ xs|reverse|list }} {{ xs|sort }} {{ xs|sort(reverse=true) }} {{ ['b','A','a','c']|unique|list }} {{ 'abc'|list }} {{ xs|max }} {{ xs|min }} {{ xs|sum }} {{ 'abc'|reverse }}",
            "{\"xs\": [3, 1, 2]}",
            "3 2 3 3 3, 1, 2 [2, 1, 3] [1, 2, 3] [3, 2, 1] ['b', 'A', 'c'] ['a', 'b', 'c'] 3 1 6 cba"
        },
        {
            "Filters_Attributes",
            "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('+') }}|{{ ms|rejectattr('role', 'eq', 'user')|list|length }}|{{ ms|map(attribute='missing', default='?')|list }}|{{ ms|selectattr('flag')|map(attribute='content')|list }}|{{ [1,2,3,4]|select('even')|list }}|{{ [1,2,3,4]|reject('odd')|list }}|{{ ['a','b']|map('upper')|join }}|{{ ms|sort(attribute='content')|map(attribute='role')|join(',') }}|{{ ms|join(',', attribute='role') }}",
            "{\"ms\": [{\"role\": \"user\", \"content\": \"b\", \"flag\": true}, {\"role\": \"assistant\", \"content\": \"c\"}, {\"role\": \"user\", \"content\": \"a\"}]}",
            "b+a|1|['?', '?', '?']|['b']|[2, 4]|[2, 4]|AB|user,user,assistant|user,assistant,user"
        },
        {
            "Filters_ToJson",
            "{{ v|tojson }}|{{ v|tojson(indent=2) }}|{{ [] |tojson(indent=2) }}|{{ 'caf\u00e9 \"q\" \\n'|tojson }}|{{ {'z': 1, 'a': 2}|tojson(sort_keys=true) }}",
            "{\"v\": {\"a\": [1, 2.0, null, true], \"b\": {\"c\": \"d\"}, \"e\": {}}}",
            "{\"a\": [1, 2.0, null, true], \"b\": {\"c\": \"d\"}, \"e\": {}}|{\n  \"a\": [\n    1,\n    2.0,\n    null,\n    true\n  ],\n  \"b\": {\n    \"c\": \"d\"\n  },\n  \"e\": {}\n}|[]|\"caf\u00e9 \\\"q\\\" \\n\"|{\"a\": 2, \"z\": 1}"
        },
        {
            "Filters_Indent",
            "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(width='> ', blank=true) }}",
            "{}",
            "a\n    b\n\n    c|  a\n  b|a\n> \n> b"
        },
        {
            "Tests_All",
            "{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ 'a' is string }}{{ none is none }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is iterable }}{{ 2 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 1 is true }}{{ x is not none }}{{ 'a' is equalto 'a' }}{{ 2 is gt 1 }}{{ 'ab' is lower }}{{ 1 is in [1, 2] }}{{ range is callable }}",
            "{\"x\": 0}",
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrue"
        },
        {
            "Methods_String",
            "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'ab'.upper() }}{{ 'AB'.lower() }}|{{ 'hello world'.title() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abcb'.find('b') }}{{ 'abc'.find('z') }}|{{ '{} and {name}'.format(1, name='n') }}|{{ '-'.join(['a', 'b']) }}|{{ 'abcb'.count('b') }}",
            "{\"s\": \"  hi  \"}",
            "hi|hi  |  hi|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b,c']|['a,b', 'c']|TrueTrue|ABab|Hello World|bba|1-1|1 and n|a-b|2"
        },
        {
            "Methods_Dict",
            "{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.items()|list }}|{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}",
            "{\"d\": {\"a\": 1, \"b\": \"x\"}}",
            "['a', 'b']|[1, 'x']|[('a', 1), ('b', 'x')]|1|None|5"
        },
        {
            "Raw_Block",
            "{% raw %}{{ not evaluated }} {% if %}{% endraw %}!",
            "{}",
            "{{ not evaluated }} {% if %}!"
        },
        {
            "Filters_RoundLikePython",
            "{{ 0.5 | round }} {{ 1.5 | round }} {{ -2.5 | round }} {{ 2.675 | round(2) }} {{ 0.125|round(2) }} {{ 1234.5678|round(1) }} {{ 1e20|round }}",
            "{}",
            "0.0 2.0 -2.0 2.67 0.12 1234.6 1e+20"
        },
        {
            "Filters_DictSort",
            "{{ d|dictsort }}{{ d|dictsort(by='value', reverse=true) }}",
            "{\"d\": {\"b\": 1, \"a\": 2, \"C\": 0}}",
            "[('a', 2), ('b', 1), ('C', 0)][('a', 2), ('b', 1), ('C', 0)]"
        },
        {
            "Strings_LengthCountsCodePoints",
            "{{ s|length }}{{ s|list }}",
            "{\"s\": \"\u00e9\u4e2d\ud83d\ude00\"}",
            "3['\u00e9', '\u4e2d', '\ud83d\ude00']"
        },
        {
            "Loop_Cycle",
            "{% for x in [1,2,3] %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
            "{}",
            "oddevenodd"
        },
        {
            "Raw_WhitespaceMarkers",
            "x {%- raw %} {{ y }} {% endraw -%} z|{% raw -%}   {{ x }}   {%- endraw %}|",
            "{}",
            "x {{ y }} z|{{ x }}|"
        },
        {
            "Lexer_NestedBracesAndCrLf",
            "{{ {'a': {'b': 1}} }}{{ '{{' }}\r\n{% if true %}\r\nc{% endif %}\n",
            "{}",
            "{'a': {'b': 1}}{{\nc"
        },
        {
            "Scope_MacroSeesGlobalsNotLoopLocals",
            "{% macro f() %}{{ g }}{% endmacro %}{% set g = 'G' %}{{ f() }}{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{% endfor %}{{ loop.index }};{% endfor %}",
            "{}",
            "G10201;11212;"
        },
        {
            "Print_FloatsAndTypes",
            "{{ 1.5e3 }} {{ 3.0 * 2 }} {{ 10 / 5 }} {{ 2 ** -1 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 123456789.123 }} {{ 1e-7 }} {{ 12345678901234567890.0 }} {{ true + 1 }} {{ 7.5 % 2 }} {{ -7.5 // 2 }}",
            "{}",
            "1500.0 6.0 2.0 0.5 0.30000000000000004 0.3333333333333333 123456789.123 1e-07 1.2345678901234567e+19 2 1.5 -4.0"
        },
        {
            "Whitespace_Probe01",
            "  {# c #}\n  x",
            "{}",
            "  x"
        },
        {
            "Whitespace_Probe02",
            "\t{% if true %}\n\tA\n\t{% endif %}\n",
            "{}",
            "\tA\n"
        },
        {
            "Whitespace_Probe03",
            "{{ 1 }}  {% if true %}x{% endif %}",
            "{}",
            "1  x"
        },
        {
            "Whitespace_Probe04",
            "{{ 1 }}\n  {% if true %}x{% endif %}",
            "{}",
            "1\nx"
        },
        {
            "Whitespace_Probe05",
            "a\n  {%- if true %}x{% endif %}",
            "{}",
            "ax"
        },
        {
            "Whitespace_Probe06",
            "a\n  {% if true -%}\n   x{% endif %}",
            "{}",
            "a\nx"
        },
        {
            "Whitespace_Probe07",
            "{% if true %}  \nx{% endif %}",
            "{}",
            "  \nx"
        },
        {
            "Whitespace_Probe08",
            "{% if true +%}\nx{% endif %}",
            "{}",
            "\nx"
        },
        {
            "Whitespace_Probe09",
            "x\n{#- c #}\ny",
            "{}",
            "xy"
        },
        {
            "Whitespace_Probe10",
            "  \n  {% set x = 1 %}  \n{{ x }}",
            "{}",
            "  \n  \n1"
        },
        {
            "Whitespace_Probe11",
            "{%- set x = 1 -%}\n\n{{- x -}}\n\n",
            "{}",
            "1"
        },
        {
            "Whitespace_Probe12",
            "x {#+ keep #} y",
            "{}",
            "x  y"
        },
        {
            "Filter_Block",
            "{% filter upper %}shout {{ x }}{% endfilter %}",
            "{\"x\": \"it\"}",
            "SHOUT IT"
        },
    };
}
