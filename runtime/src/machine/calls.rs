//! Call and spawn: the variables a child starts with, and the outputs a call
//! maps back.

use super::*;

impl<'m, 'p> Step<'m, 'p> {
    /// The business key and variables of the instance a call or spawn starts.
    pub(super) fn child_start(
        &self,
        scope: ScopeId,
        business_key: &Option<Value>,
        input: &raw::Mapping,
    ) -> Result<(Option<String>, Vars), String> {
        let vars = self.inst.visible_vars(scope);
        let ev = Evaluator::new(self.m.process, &vars);
        let key = match business_key {
            None => None,
            Some(v) => key_text(ev.value(v).map_err(|e| format!("`business_key`: {e}"))?),
        };
        let variables = match ev
            .value(&Value::Object(input.clone().into_iter().collect()))
            .map_err(|e| format!("`in`: {e}"))?
        {
            Value::Object(m) => m,
            _ => Vars::new(),
        };
        Ok((key, variables))
    }

    /// Writes a call activity's `out` mappings, evaluated over the child's variables.
    pub(super) fn write_call_outputs(&mut self, i: usize, child: Vars) -> Result<(), String> {
        let node = self.inst.tokens[i].node.clone();
        let Some(Node::Call(c)) = self.m.node(&node) else {
            return Ok(());
        };
        let scope = self.inst.tokens[i].scope;
        let ev = Evaluator::new(self.m.process, &child);
        for (k, v) in &c.out {
            let v = ev.value(v).map_err(|e| format!("`out` `{k}`: {e}"))?;
            self.set_var(scope, k.clone(), v)?;
        }
        Ok(())
    }
}
